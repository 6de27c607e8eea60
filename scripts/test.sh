#!/usr/bin/env bash
# The test command: set up a fresh machine, then run every test (unit and integration:
# the integration tests start their own Tansu broker and talk to the real Redis).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
