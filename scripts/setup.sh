#!/usr/bin/env bash
# Create .venv with the CPU build of torch and the package in editable mode.
# torch is pinned to 2.13.0 here only because that CPU wheel is what this project's
# machines carry; any torch >= 2.3 works (see pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[dev]"
