#!/usr/bin/env bash
# Set up a virtual environment (if missing) and run lint and the fast test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest -m "not slow" -q "$@"
