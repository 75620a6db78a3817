#!/usr/bin/env bash
# The main job: crash a real Debian kernel in a VM, warm-reboot it, and print
# the report memconsole recovered inside the rebooted guest.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
exec .venv/bin/memconsole demo "$@"
