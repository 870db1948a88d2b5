#!/usr/bin/env bash
# The main job: install what is missing, then run the whole system on this
# machine (broker, hub with web pages, simulated ERs and ambulances).
# Extra arguments go to `goldenhour demo` (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
deploy/bootstrap.sh demo
exec .venv/bin/goldenhour demo "$@"
