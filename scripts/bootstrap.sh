#!/usr/bin/env bash
# Install what memconsole's VM lab and test suite need on a Debian 12 machine,
# then create .venv with memconsole installed in it.  Idempotent; run as root.
#   scripts/bootstrap.sh          system packages + .venv with test extras
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf 'bootstrap: %s\n' "$*" >&2; }

# Debian kernels the lab boots: bookworm's 6.1 and the 6.12 backport, with
# headers (to build the crash test module) and modules (ramoops, 9p).
PKGS=(qemu-system-x86 busybox-static cpio kmod make gcc binutils xz-utils python3-venv systemd
      systemd-journal-remote util-linux
      linux-image-amd64 linux-headers-amd64
      linux-image-6.12-amd64 linux-headers-6.12-amd64)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        say "missing packages: ${missing[*]}; run this script as root"
        exit 1
    fi
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import memconsole, pytest, hypothesis' 2>/dev/null \
   || [ pyproject.toml -nt .venv/.installed ]; then
    say "installing memconsole and its test extras into .venv"
    .venv/bin/python -m pip install -q --upgrade pip >&2
    .venv/bin/python -m pip install -q -e '.[test,fast]' >&2
    touch .venv/.installed
fi
say "ready"
