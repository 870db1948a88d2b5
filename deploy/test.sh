#!/usr/bin/env bash
# The whole test suite: install what is missing (Mosquitto, PostgreSQL,
# Chromium, Python packages), then lint (ruff) and run pytest. Real services are required:
# a missing one fails the run instead of skipping its tests.
# Extra arguments go to pytest.
set -uo pipefail
cd "$(dirname "$0")/.."
deploy/bootstrap.sh test || exit 1
export GOLDENHOUR_REQUIRE_SERVICES=1
.venv/bin/ruff check --quiet . || { echo "goldenhour: lint failed (ruff check .)" >&2; exit 1; }
.venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "goldenhour: pytest collected no tests; that is a failure" >&2
  exit 1
fi
exit "$rc"
