#!/usr/bin/env bash
# Inject every fault (chaos suite, with a several-minute outage), run the fuzz
# suite, hold the benchmark load, and write docs/reliability.md from the figures.
# Usage: deploy/reliability.sh [OUTAGE_SECONDS]   (default 180)
set -euo pipefail
cd "$(dirname "$0")/.."
outage="${1:-180}"
deploy/bootstrap.sh test
export GOLDENHOUR_REQUIRE_SERVICES=1
rm -f .chaos-outcomes.json .fuzz-summary.json
.venv/bin/python -m pytest -q -p no:cacheprovider -m chaos tests/chaos --chaos-outage "$outage"
.venv/bin/python -m pytest -q -p no:cacheprovider tests/fuzz
.venv/bin/goldenhour bench hub --json > .bench-hub.json
.venv/bin/python -m tests.chaos.report --chaos .chaos-outcomes.json --fuzz .fuzz-summary.json \
  --bench .bench-hub.json --command "./deploy/reliability.sh $outage" > docs/reliability.md
echo "wrote docs/reliability.md"
