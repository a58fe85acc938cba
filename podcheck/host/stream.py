"""A command on the local pod whose output is read while it runs: each line goes to `on_line` (for the
--fix progress: the last line of a 9-minute pip install), and the whole output comes back in a Ran.

Local pods only (testinfra gives a remote command's output at its end). The command runs in its own
session under coreutils `timeout`, like Pod.run; past the deadline its whole process group is killed,
and the pipes are closed 2 s after it ends, so a daemon child holding stdout cannot keep the run open.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from typing import Callable

from podcheck.host.pod import KILL_GRACE, Ran


def run(argv: list[str], timeout: float, env: dict[str, str] | None,
        on_line: Callable[[str], None]) -> Ran:
    """Run argv (no shell) under `timeout`; call `on_line(text)` with each line of stdout or stderr."""
    prefix = ["timeout", "-k", str(KILL_GRACE), f"{timeout:g}"]
    if env:
        prefix += ["env"] + [f"{k}={v}" for k, v in env.items()]
    started = time.monotonic()
    try:
        proc = subprocess.Popen(prefix + [str(a) for a in argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:
        return Ran(list(argv), 127, "", str(exc), time.monotonic() - started, timeout)
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}

    def pump(stream, key: str) -> None:
        for raw in iter(stream.readline, b""):
            chunks[key].append(raw)
            text = raw.decode("utf-8", errors="replace").strip()
            if text:
                on_line(text)

    readers = [threading.Thread(target=pump, args=(proc.stdout, "out"), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, "err"), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        rc = proc.wait(timeout + KILL_GRACE + 5)
    except subprocess.TimeoutExpired:
        rc = 124
    if rc in (124, 137):  # past the deadline, what is left of the group (a daemon child) goes with it
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    for reader in readers:
        reader.join(2)
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    text = {k: b"".join(v).decode("utf-8", errors="replace") for k, v in chunks.items()}
    return Ran(list(argv), rc, text["out"], text["err"], time.monotonic() - started, timeout)
