#!/usr/bin/env bash
# Install what memconsole's VM lab and test suite need on a Debian 12 machine,
# then create .venv with memconsole installed in it.  Idempotent.
#   scripts/bootstrap.sh          system packages + .venv with test extras
# Runs as root (sudo need not be installed) or as a user who may use sudo
# (apt-get then runs through sudo; .venv belongs to the user).  It prints a
# few lines of progress; what apt-get and pip print goes to the log file it
# names ($MEMCONSOLE_BOOTSTRAP_LOG, default /tmp/memconsole-bootstrap-UID.log),
# and its last lines are shown when a step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

LOG=${MEMCONSOLE_BOOTSTRAP_LOG:-/tmp/memconsole-bootstrap-$(id -u).log}
: > "$LOG"
say() { printf 'bootstrap: %s\n' "$*" >&2; }
# run STEP CMD...: CMD's output into the log; on failure, its tail and exit.
run() {
    local step=$1; shift
    printf '\n== %s: %s\n' "$step" "$*" >> "$LOG"
    if ! "$@" >> "$LOG" 2>&1; then
        say "$step failed; the last lines of $LOG:"
        tail -n 20 "$LOG" | sed 's/^/    /' >&2
        exit 1
    fi
}
say "log: $LOG"

# Debian kernels the lab boots: bookworm's 6.1 and the 6.12 backport, with
# headers (to build the crash test module) and modules (ramoops, 9p).
# systemd-journal-remote: the fleet test; chromium: the report page test;
# groff-base: the man page test; dkms: the setup --kernel-console test;
# grub-common/grub2-common: the setup test runs the real grub-mkconfig; ovmf:
# verify and bench/survival.py --ovmf boot UEFI guests.
# (promtool, in Debian's prometheus package, is used by the metrics test when
# present; it is not installed here: the package starts a Prometheus server.)
PKGS=(qemu-system-x86 busybox-static cpio kmod make gcc binutils xz-utils python3-venv systemd
      systemd-journal-remote util-linux chromium fonts-dejavu-core groff-base dkms
      grub-common grub2-common ovmf
      linux-image-amd64 linux-headers-amd64
      linux-image-6.12-amd64 linux-headers-6.12-amd64)

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        as_root=(env)
    elif command -v sudo >/dev/null 2>&1; then
        as_root=(sudo env)
        say "apt-get runs through sudo (it may ask for your password)"
        sudo -v
    else
        say "missing packages: ${missing[*]}; run this script as root, or install sudo"
        exit 1
    fi
    say "installing ${#missing[@]} Debian packages: ${missing[*]}"
    run "apt-get update" "${as_root[@]}" DEBIAN_FRONTEND=noninteractive apt-get update -q
    run "apt-get install" "${as_root[@]}" DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -q --no-install-recommends "${missing[@]}"
else
    say "Debian packages: all ${#PKGS[@]} present"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    say "creating .venv"
    run "venv" "$PY" -m venv .venv
fi
if ! .venv/bin/python -c 'import memconsole, pytest, hypothesis, jsonschema, prometheus_client' \
        2>/dev/null || [ pyproject.toml -nt .venv/.installed ]; then
    say "installing memconsole and its test extras into .venv (pip)"
    run "pip upgrade" .venv/bin/python -m pip install --upgrade pip
    run "pip install" .venv/bin/python -m pip install -e '.[test,fast]'
    touch .venv/.installed
else
    say ".venv: up to date"
fi
say "ready"
