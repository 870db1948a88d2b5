#!/usr/bin/env bash
# Prepare this machine for goldenhour: Debian packages that are missing (as
# root, or through sudo) and a virtual environment in .venv with the project.
# Idempotent: a second run installs nothing unless pyproject.toml changed.
# Usage: deploy/bootstrap.sh demo|test
set -euo pipefail
cd "$(dirname "$0")/.."
profile="${1:-demo}"

have() { command -v "$1" >/dev/null 2>&1; }
need=()
have mosquitto || [ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
PY="${PYTHON:-python3}"
"$PY" -c 'import ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ "$profile" = test ]; then
  compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || have initdb || need+=(postgresql)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  have openssl || need+=(openssl)
  # tests/deploy: systemd-analyze checks the units, nginx the reverse proxy's configuration.
  have systemd-analyze || need+=(systemd)
  have nginx || [ -x /usr/sbin/nginx ] || need+=(nginx)
  # dciodvfy checks the DICOM SR and Secondary Capture the hub writes
  have dciodvfy || need+=(dicom3tools)
  # Korean glyphs for the consoles' screenshots: nice to have, never required
  # (the tests check text, not glyphs), so only asked for when we can install.
  if [ ! -d /usr/share/fonts/truetype/nanum ] && { [ "$(id -u)" = 0 ] || have sudo; }; then
    need+=(fonts-nanum)
  fi
fi

if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif have sudo; then sudo="sudo"; else sudo="-"; fi
  if [ "$sudo" = "-" ]; then
    echo "goldenhour: missing system packages: ${need[*]}" >&2
    echo "  install them as root: apt-get install ${need[*]}" >&2
    # The demo can run without mosquitto (in-process amqtt); the tests cannot.
    [ "$profile" = test ] && exit 1
  else
    echo "goldenhour: installing system packages: ${need[*]}" >&2
    $sudo apt-get update -qq
    # Start no daemon while installing: the tests and the demo run their own
    # Mosquitto, PostgreSQL and nginx on free ports, and a system nginx that
    # cannot bind port 80 would fail the install. Debian's container images
    # have this policy already; elsewhere it is in place for the install only.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
      policy=/usr/sbin/policy-rc.d
      printf '#!/bin/sh\n# goldenhour bootstrap: no service starts during this install\nexit 101\n' \
        | $sudo tee "$policy" >/dev/null
      $sudo chmod 755 "$policy"
      trap '$sudo rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    if [ -n "$policy" ]; then
      $sudo rm -f "$policy"
      trap - EXIT
    fi
    # The tests run their own nginx; a freshly installed system one is not wanted.
    if [[ " ${need[*]} " == *" nginx "* ]] && have systemctl && [ -d /run/systemd/system ]; then
      $sudo systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
  fi
fi

"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "goldenhour needs Python 3.11 or newer ($PY is older)" >&2; exit 1; }
[ -x .venv/bin/python ] || "$PY" -m venv .venv
extras="edge,hub,embedded-broker"
# The tests train tiny models and compare backends with the torch reference,
# and import a Keras model they train (keras: TensorFlow).
[ "$profile" = test ] && extras="$extras,train,keras,dev"
hash="$(sha256sum pyproject.toml | cut -c1-16)"
stamp=".venv/.installed-${profile}-${hash}"
# The test profile's extras include the demo's: a .venv made for the tests serves the demo as it is.
if [ "$profile" = demo ] && [ -f ".venv/.installed-test-${hash}" ]; then
  stamp=".venv/.installed-test-${hash}"
fi
if [ ! -f "$stamp" ]; then
  echo "goldenhour: installing Python packages (.[${extras}]) into .venv" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[${extras}]"
  touch "$stamp"
fi
