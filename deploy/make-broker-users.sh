#!/usr/bin/env bash
# Per-device broker users for Mosquitto: a password file, an ACL derived from
# the topic contract (shared/topics.py) and one credentials file per device.
#
# Usage:
#   deploy/make-broker-users.sh OUT_DIR [--ambulance ID]... [--er HOSPITAL_ID]... \
#       [--hub HUB_ID]... [--ca-file /etc/goldenhour/ca.crt]
#
# Writes OUT_DIR/passwd (Mosquitto PBKDF2-SHA512 "$7$" hashes, mode 600),
# OUT_DIR/acl (one `user` section per device) and OUT_DIR/credentials/<user>.env
# (mode 600): the user name and a random password as the service's environment
# variables (GOLDENHOUR_EDGE_MQTT__* for an ambulance, GOLDENHOUR_HUB_MQTT__* for
# a hub worker, whose user is hub-<HUB_ID>; MQTT_USERNAME/MQTT_PASSWORD for an ER).
# Idempotent: a device with a credentials file keeps its password. Name every
# device on each run: passwd and acl hold exactly the devices named.
# Then point mosquitto at them (deploy/mosquitto-secure.conf) and reload it.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
    [[ $# -lt 1 ]] && exit 2 || exit 0
fi
python=${PYTHON:-"$root/.venv/bin/python"}
[[ -x "$python" ]] || python=python3
PYTHONPATH="$root${PYTHONPATH:+:$PYTHONPATH}" exec "$python" -m shared.broker_security "$@"
