"""Run a command beside a private, real systemd-journald.

    unshare --mount --propagation private python3 journald_ns.py OUTDIR -- CMD...

In the new mount namespace: tmpfs on /run/systemd and /run/log (so the
host's own journal, if it has one, is never touched), a journald.conf with
``Storage=volatile`` and ``ReadKMsg=no`` bound over /etc/systemd/journald.conf,
then ``/lib/systemd/systemd-journald``; once its native socket
(/run/systemd/journal/socket) exists, CMD runs with it.  Afterwards journald
is stopped (SIGTERM: its files are closed cleanly) and its journal files are
copied to OUTDIR/journal, for ``journalctl --directory``; CMD's exit status
goes to OUTDIR/rc.  The machine is left as it was: everything mounted lives
in the namespace and dies with it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

JOURNALD = "/lib/systemd/systemd-journald"
CONF = "[Journal]\nStorage=volatile\nReadKMsg=no\nRateLimitBurst=0\n"


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    cmd = argv[argv.index("--") + 1:]
    out.mkdir(parents=True, exist_ok=True)
    for where in ("/run/systemd", "/run/log"):
        os.makedirs(where, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", where], check=True)
    conf = Path("/run/systemd/memconsole-test-journald.conf")
    conf.write_text(CONF)
    subprocess.run(["mount", "--bind", str(conf), "/etc/systemd/journald.conf"], check=True)
    journald = subprocess.Popen([JOURNALD], stdout=subprocess.DEVNULL,
                                stderr=open(out / "journald.log", "wb"))  # noqa: SIM115
    deadline = time.monotonic() + 30
    while not Path("/run/systemd/journal/socket").is_socket():
        if journald.poll() is not None or time.monotonic() > deadline:
            print("journald_ns: systemd-journald did not come up", file=sys.stderr)
            return 1
        time.sleep(0.05)
    try:
        rc = subprocess.run(cmd, check=False).returncode
        subprocess.run(["journalctl", "--sync"], check=False, timeout=30)
    finally:
        journald.send_signal(signal.SIGTERM)
        journald.wait(30)
    (out / "rc").write_text(f"{rc}\n")
    dest = out / "journal"
    dest.mkdir(exist_ok=True)
    for f in Path("/run/log/journal").glob("*/*.journal"):
        shutil.copy2(f, dest / f.name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
