#!/usr/bin/env bash
# The whole test suite, VM tests included.  Set MEMCONSOLE_FORCE_VM=1 to make
# a missing prerequisite (QEMU, a kernel, root) fail instead of skip.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
# Static checks first: a type error or a lint finding fails the run.
scripts/lint.sh
# The slowest tests are listed at the end: the suite has a time budget (README).
exec .venv/bin/python -m pytest -n "${MEMCONSOLE_TEST_JOBS:-2}" --durations=25 "$@"
