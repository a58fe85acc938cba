"""Processes (and the clock) of the pod's host, read through commands so that remote hosts work too.

`listing(pod)` is one `ps`; exact argv, working directory and environment of a process come from
/proc/<pid>/ (ps joins argv with spaces, which loses quoting).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    elapsed: float  # seconds since it started
    args: str       # argv joined by spaces, as ps prints it


def listing(pod: Any) -> list[Proc]:
    """Every process on the host (empty when ps cannot run)."""
    ran = pod.run("ps", "-ww", "-eo", "pid=,ppid=,etimes=,args=")  # -ww: never cut at the terminal width
    if not ran.ok:
        return []
    out = []
    for line in ran.stdout.splitlines():
        parts = line.split(None, 3)
        if len(parts) < 4 or not all(p.isdigit() for p in parts[:3]):
            continue
        out.append(Proc(int(parts[0]), int(parts[1]), float(parts[2]), parts[3]))
    return out


def argv(pod: Any, pid: int) -> list[str] | None:
    """The exact argv of `pid`, or None when it is gone or unreadable."""
    text = pod.read_text(f"/proc/{int(pid)}/cmdline")
    if not text:
        return None
    return text.rstrip("\0").split("\0")


def cwd(pod: Any, pid: int) -> str | None:
    ran = pod.run("readlink", f"/proc/{int(pid)}/cwd")
    return ran.stdout.strip() or None if ran.ok else None


def environ(pod: Any, pid: int) -> dict[str, str]:
    """The environment `pid` started with ({} when unreadable)."""
    text = pod.read_text(f"/proc/{int(pid)}/environ") or ""
    return dict(item.split("=", 1) for item in text.split("\0") if "=" in item)


def alive(pod: Any, pid: int, marker: str = "") -> bool:
    """`pid` runs on the host (and its argv contains `marker`, when given: a reused pid is not ours)."""
    found = argv(pod, pid)
    return found is not None and (not marker or any(marker in a for a in found))


def ancestors(procs: list[Proc], pid: int) -> list[Proc]:
    """The parent chain of `pid`, nearest first."""
    by_pid = {p.pid: p for p in procs}
    out: list[Proc] = []
    current = by_pid.get(pid)
    while current is not None and current.ppid in by_pid and len(out) < 64:
        current = by_pid[current.ppid]
        out.append(current)
    return out


def now(pod: Any) -> float:
    """The host's clock (file mtimes on the host are compared with it)."""
    if pod.is_local:
        import time
        return time.time()
    ran = pod.run("date", "+%s.%N")
    try:
        return float(ran.stdout.strip())
    except ValueError:
        import time
        return time.time()
