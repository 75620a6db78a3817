#!/usr/bin/env bash
# Static checks: ruff over src, tests and bench, then mypy --strict (files
# and options in pyproject.toml).  Exits non-zero on the first finding.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${MEMCONSOLE_PYTHON:-.venv/bin/python}
"$PY" -m ruff check src tests bench
"$PY" -m mypy
