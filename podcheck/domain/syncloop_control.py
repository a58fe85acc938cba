"""podcheck's control of its managed sync loop (podcheck.syncloop) on a pod's host: whether it runs
(running_pid, status), starting it detached (for a remote pod, after shipping the loop's code to
`<state_dir>/syncloop-code/`) and stopping it. The loop itself, and the settings it is started with,
are podcheck.syncloop's; this module is never shipped, so it may import anything below its floor.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from podcheck import syncloop
from podcheck.host import procs, shell, sides
from podcheck.host.actor import Actor
from podcheck.host.state import State
from podcheck.syncloop import MARKER, SHIPPED, SyncLoopError, names, settings


def status(pod: Any) -> dict[str, Any] | None:
    """The loop's status document (pid, started, last_success, last_pass, users, settings), or None."""
    return State(pod).read(names(pod.config)["status"])


def running_pid(pod: Any) -> int | None:
    """The pid of this pod's loop when it runs on this host, else None."""
    text = pod.read_text(names(pod.config)["pidfile"])
    try:
        pid = int((text or "").split()[0])
    except (IndexError, ValueError):
        return None
    return pid if procs.alive(pod, pid, MARKER) else None


@dataclass
class Started:
    changed: bool
    pid: int
    message: str


def start(pod: Any, wait: float = 10.0, act: Any = None) -> Started:
    """Start the loop detached on the pod's host unless it already runs; wait until it reports in.
    `act` makes the changes (podcheck.host.actor.Actor; a repair's Context records them, and in a
    dry run only records them)."""
    act = act or Actor(pod)
    pid = running_pid(pod)
    if pid:
        return Started(False, pid, f"the sync loop already runs (pid {pid})")
    config = pod.config
    wanted = settings(config)
    state = State(pod)
    n = names(config)
    act.do(f"write {state.path(n['settings'])}", lambda: state.write(n["settings"], wanted), None)
    side = sides.of(pod)
    python, pythonpath = side.python, ship(pod, act) if side.needs_shipping else ""
    env = ["env", f"PYTHONPATH={pythonpath}"] if pythonpath else []
    pid, ran = shell.start_detached(act.run, [*env, python, "-m", MARKER, state.path(n["settings"])], wanted["log"],
                                    dry_run=act.dry_run)
    if act.dry_run:
        return Started(True, 0, f"would start the sync loop, log {wanted['log']}")
    if pid is None:
        raise SyncLoopError(f"cannot start the sync loop: {ran.why()}")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        current = status(pod) or {}
        if current.get("pid") == pid and not current.get("stopped"):
            return Started(True, pid, f"started the sync loop (pid {pid}), log {wanted['log']}")
        if not procs.alive(pod, pid):
            break
        time.sleep(0.05)
    tail = ([ln for ln in shell.tail(pod.run, wanted["log"], 3) if ln.strip()] or ["no output"])[-1].strip()
    raise SyncLoopError(f"the sync loop (pid {pid}) did not start: {tail[:300]}")


def stop(pod: Any, timeout: float = 10.0, act: Any = None) -> int | None:
    """Stop this pod's loop (TERM to its process group, KILL after `timeout`); its pid, or None if none ran.
    `act`: as for start()."""
    act = act or Actor(pod)
    pid = running_pid(pod)
    if pid is None:
        return None
    shell.stop(pod, act.run, pid, timeout, MARKER, poll=0.05, dry_run=act.dry_run)
    return pid


def ship(pod: Any, act: Any = None) -> str:
    """Copy the loop's code (podcheck.syncloop.SHIPPED) to <state_dir>/syncloop-code/podcheck/ on the
    host; return the PYTHONPATH."""
    act = act or Actor(pod)
    root = f"{pod.config.pod.state_dir}/syncloop-code"
    here = Path(syncloop.__file__).parent
    for name in SHIPPED:
        ran = shell.write(act.run, f"{root}/podcheck/{name}", (here / name).read_text())
        if not ran.ok:
            raise SyncLoopError(f"cannot copy the sync loop to {root}: {ran.why()}")
    return root
