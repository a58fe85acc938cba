"""Processes (and the clock) of the pod's host: one process table, read with psutil on this machine and
with one command elsewhere (host/sides.py chooses).

`table(pod)` maps pid -> Proc (ppid, pgid, state, start, argv, working folder); exact argv, working
directory and environment of one process also come from /proc/<pid>/ through the pod.
"""
from __future__ import annotations

from typing import Any

from podcheck.host import sides
from podcheck.host.sides import Proc

__all__ = ["Proc", "alive", "ancestors", "argv", "cwd", "descendants", "environ", "listing", "now", "running",
           "same", "table"]


def table(pod: Any) -> dict[int, Proc]:
    """Every process on the host, by pid (empty when /proc cannot be read)."""
    return sides.of(pod).table()


def listing(pod: Any) -> list[Proc]:
    """Every process on the host, by pid."""
    return [p for _, p in sorted(table(pod).items())]


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
    """`pid` runs on the host, not as a zombie (and its argv contains `marker`, when given: a reused pid
    is not ours)."""
    return sides.of(pod).alive(pid, marker)


#: Whether THIS machine runs a pid (started at a time, with a marker in its argv): for pidfiles and
#: locks that name a process of this machine.
running = sides.running_here


def same(procs: dict[int, Proc], known: Proc) -> bool:
    """`known` still runs in the table `procs`: same pid, same start, not a zombie."""
    now = procs.get(known.pid)
    return now is not None and now.started == known.started and now.running


def descendants(procs: dict[int, Proc], root: int) -> list[Proc]:
    """root and everything below it."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in procs:
            out.append(procs[pid])
            stack.extend(children.get(pid, []))
    return out


def ancestors(procs: list[Proc] | dict[int, Proc], pid: int) -> list[Proc]:
    """The parent chain of `pid`, nearest first."""
    by_pid = procs if isinstance(procs, dict) else {p.pid: p for p in procs}
    out: list[Proc] = []
    current = by_pid.get(pid)
    while current is not None and current.ppid in by_pid and len(out) < 64:
        current = by_pid[current.ppid]
        out.append(current)
    return out


def own_groups(pod: Any) -> set[int]:
    """Pids and groups a stop must never signal: podcheck's own, when it runs on the pod."""
    return sides.of(pod).own_groups()


def now(pod: Any) -> float:
    """The host's clock (file mtimes on the host are compared with it)."""
    return sides.of(pod).now()
