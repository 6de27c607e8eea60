#!/usr/bin/env bash
# The test command: set up a fresh machine, then run every test (unit and integration:
# the integration tests start their own Tansu broker and talk to the real Redis).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# lint first: a second of work, and a slip fails here with its file and line
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
