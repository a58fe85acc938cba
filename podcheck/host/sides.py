"""The one place that chooses how to reach the pod's host: in this process (psutil, the clock, urllib,
os.path) when podcheck runs on the pod, or through commands (`pod.run`) when it runs elsewhere.

The rest of podcheck asks `of(pod)` and never looks at `pod.is_local` (as testinfra's
`Process.get_module_class` picks the platform's module once).

>>> of(pod).now() > 0
True
"""
from __future__ import annotations

import os
import posixpath
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Proc:
    """One process of the host: `started` in epoch seconds on the host's clock (with the pid it tells a
    process from a later one); `state` the /proc letter (Z: a zombie); `argv` empty and `cwd` None when
    unreadable."""

    pid: int
    ppid: int
    pgid: int
    state: str
    started: float | None
    argv: tuple[str, ...]
    cwd: str | None
    elapsed: float = 0.0  # seconds since it started, when listed

    @property
    def args(self) -> str:
        """argv joined by spaces, as ps prints it."""
        return " ".join(self.argv)

    @property
    def running(self) -> bool:
        return self.state not in ("Z", "X")


_PSUTIL_STATE = {"zombie": "Z", "dead": "X", "running": "R", "sleeping": "S", "disk-sleep": "D",
                 "stopped": "T", "tracing-stop": "t", "idle": "I"}


def running_here(pid: Any, started: Any = None, marker: str = "") -> bool:
    """Whether THIS machine runs process `pid` (not a zombie), started at `started` epoch seconds when
    given (a reused pid is another process), its argv containing `marker` when given."""
    import psutil

    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if marker and not any(marker in a for a in proc.cmdline()):
            return False
        return started is None or abs(proc.create_time() - float(started)) < 1.0
    except (psutil.Error, ValueError, TypeError):
        return False


class Local:
    """The host is this machine."""

    #: The python that runs podcheck's own modules there, and whether they must be copied over first.
    python = sys.executable
    needs_shipping = False


    def __init__(self, pod: Any):
        self.pod = pod

    def now(self) -> float:
        return time.time()

    def realpath(self, paths: Sequence[str]) -> list[str]:
        return [os.path.realpath(p) for p in paths]

    def table(self) -> dict[int, Proc]:
        import psutil

        out: dict[int, Proc] = {}
        now = time.time()
        for proc in psutil.process_iter(["ppid", "status", "create_time", "cmdline", "cwd"]):
            info = proc.info
            try:
                pgid = os.getpgid(proc.pid)
            except OSError:
                pgid = 0
            started = info.get("create_time")
            out[proc.pid] = Proc(proc.pid, info.get("ppid") or 0, pgid, _PSUTIL_STATE.get(info.get("status"), "S"),
                                 started, tuple(info.get("cmdline") or ()), info.get("cwd") or None,
                                 max(0.0, now - started) if started else 0.0)
        return out

    def alive(self, pid: int, marker: str = "") -> bool:
        return running_here(pid, marker=marker)

    def own_groups(self) -> set[int]:
        """This process and its group: never signalled by a stop."""
        return {os.getpid(), os.getpgrp()}

    def request(self, url: str, method: str, payload: str | None, limit: float):
        import urllib.error
        import urllib.request

        req = urllib.request.Request(url, data=payload.encode() if payload is not None else None, method=method,
                                     headers={"Content-Type": "application/json"} if payload is not None else {})
        try:
            with urllib.request.urlopen(req, timeout=limit) as resp:
                return resp.status, resp.read().decode(errors="replace"), None
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace"), None
        except TimeoutError:
            return None, None, f"no answer within {limit:g} s"
        except urllib.error.URLError as exc:
            if isinstance(exc.reason, TimeoutError):
                return None, None, f"no answer within {limit:g} s"
            return None, None, str(getattr(exc.reason, "strerror", None) or exc.reason)
        except (OSError, ValueError) as exc:  # connection reset, a reply that is not HTTP
            return None, None, f"{type(exc).__name__}: {exc}"


# The process table in one command: the clock ticks and boot time, every /proc/<pid>/stat, each
# working folder (find prints the link text NUL-terminated), each command line (head -v names the file
# before each; the NUL-separated argv follows). `S $$` names this script, left out of the table.
TABLE_SCRIPT = r"""
echo "T $(getconf CLK_TCK 2>/dev/null || echo 100) $(sed -n 's/^btime //p' /proc/stat) $(date +%s.%N) $$"
echo "@stat"; cat /proc/[0-9]*/stat 2>/dev/null
echo "@cwd"; find /proc/[0-9]*/cwd -maxdepth 0 -printf '%p\0%l\0' 2>/dev/null
echo; echo "@cmdline"; head -v -c 65536 -- /proc/[0-9]*/cmdline 2>/dev/null; true
"""
_HEADER = re.compile(r"\n?==> /proc/(\d+)/cmdline <==\n")

# The HTTP reply's status after its body, from curl -w or the python fallback.
STATUS_MARK = "\n@@podcheck-status "
# The fallback where curl is missing: stdlib only, any python 3.
_PY_REQUEST = r"""
import sys, urllib.request, urllib.error
url, method, body, limit = sys.argv[1:5]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                             headers={"Content-Type": "application/json"} if body else {})
try:
    resp = urllib.request.urlopen(req, timeout=float(limit)); code, data = resp.status, resp.read()
except urllib.error.HTTPError as exc:
    code, data = exc.code, exc.read()
except Exception as exc:
    sys.stderr.write("%s: %s\n" % (type(exc).__name__, getattr(exc, "reason", exc))); sys.exit(1)
sys.stdout.write(data.decode("utf-8", "replace") + "\n@@podcheck-status %d" % code)
"""


class Remote:
    """The host is reached through commands only (ssh, chroot, a container)."""

    python = "python3"
    needs_shipping = True


    def __init__(self, pod: Any):
        self.pod = pod

    def now(self) -> float:
        ran = self.pod.run("date", "+%s.%N")
        try:
            return float(ran.stdout.strip())
        except ValueError:
            return time.time()

    def realpath(self, paths: Sequence[str]) -> list[str]:
        ran = self.pod.run("readlink", "-m", "-z", "--", *paths)
        out = ran.stdout.split("\0")[:len(paths)] if ran.ok else []
        return out if len(out) == len(paths) else [posixpath.normpath(p) for p in paths]

    def table(self) -> dict[int, Proc]:
        return parse_table(self.pod.run("sh", "-c", TABLE_SCRIPT).stdout)

    def alive(self, pid: int, marker: str = "") -> bool:
        text = self.pod.read_text(f"/proc/{int(pid)}/cmdline")  # a zombie's is empty
        found = text.rstrip("\0").split("\0") if text else []
        return bool(found) and (not marker or any(marker in a for a in found))

    def own_groups(self) -> set[int]:
        return set()

    def request(self, url: str, method: str, payload: str | None, limit: float):
        pod = self.pod
        data_args = ["-H", "Content-Type: application/json", "--data-binary", payload] if payload is not None else []
        ran = pod.run("curl", "-sS", "-m", f"{limit:g}", "-X", method, *data_args,
                      "-w", STATUS_MARK.replace("\n", "\\n") + "%{http_code}", url, timeout=limit + 5)
        if ran.not_found:
            ran = pod.run(pod.config.pod.python, "-c", _PY_REQUEST, url, method, payload or "", f"{limit:g}",
                          timeout=limit + 5)
        text, mark, code = ran.stdout.rpartition(STATUS_MARK)
        if ran.ok and mark and code.strip().isdigit():
            return int(code), text, None
        if ran.rc == 28 or ran.timed_out or "timed out" in ran.stderr:
            return None, None, f"no answer within {limit:g} s"
        lines = ran.stderr.strip().splitlines()
        return None, None, re.sub(r"^curl: \(\d+\) ", "", lines[-1] if lines else ran.why())[:300]


def parse_table(text: str) -> dict[int, Proc]:
    """The processes in TABLE_SCRIPT's output (its own shell and that shell's children left out)."""
    head, _, rest = text.partition("\n@stat\n")
    stats, _, rest = rest.partition("\n@cwd\n")
    cwds, _, cmdlines = rest.partition("\n@cmdline\n")
    parts = head.split()
    hz = float(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 100.0
    boot = float(parts[2]) if len(parts) > 2 and parts[2].isdigit() else None
    try:
        now = float(parts[3]) if len(parts) > 3 else time.time()
    except ValueError:
        now = time.time()
    me = int(parts[4]) if len(parts) > 4 and parts[4].isdigit() else -1
    fields = cwds.split("\0")
    cwd_of: dict[int, str | None] = {}
    for i in range(0, len(fields) - 1, 2):
        number = fields[i].strip("\n").removeprefix("/proc/").removesuffix("/cwd")
        if number.isdigit():
            cwd_of[int(number)] = fields[i + 1] or None
    argv_of: dict[int, tuple[str, ...]] = {}
    pieces = _HEADER.split("\n" + cmdlines)
    for pid_text, body in zip(pieces[1::2], pieces[2::2]):
        pid = int(pid_text)
        if pid in argv_of:  # a command line that forged a header: trust neither
            argv_of[pid] = ()
            continue
        argv_of[pid] = tuple(a for a in body.removesuffix("\0").split("\0")) if body else ()
    out: dict[int, Proc] = {}
    for line in stats.splitlines():
        name_end = line.rfind(")")
        values = line[name_end + 1:].split()
        if name_end < 0 or len(values) < 20:
            continue
        try:
            pid = int(line.split(" (", 1)[0])
            ppid, pgid, ticks = int(values[1]), int(values[2]), int(values[19])
        except ValueError:
            continue
        if pid == me or ppid == me:
            continue
        started = boot + ticks / hz if boot is not None else None
        out[pid] = Proc(pid, ppid, pgid, values[0], started, argv_of.get(pid, ()), cwd_of.get(pid),
                        max(0.0, now - started) if started is not None else 0.0)
    return out


def of(pod: Any) -> Local | Remote:
    """How to reach `pod`'s host: the only place podcheck looks at `is_local`."""
    return Local(pod) if pod.is_local else Remote(pod)
