"""What `podcheck status` and serve's page show of the fix engine: markers, the fix lock, the last
foreground and background runs (with their log tails), the last --fix. Rendered by podcheck.reports.status."""
from __future__ import annotations

import socket
from typing import Any

from podcheck.fix import markers as markers_mod
from podcheck.fix.lock import VolumeLock, describe
from podcheck.fix.progress import BACKGROUND, FOREGROUND
from podcheck.host import procs
from podcheck.host.pod import Pod
from podcheck.host.state import State


def status(pod: Pod) -> dict[str, Any]:
    """Markers, the lock, the last foreground and background runs (with their log tails), the last --fix."""

    state = State(pod)
    out: dict[str, Any] = {
        "state_dir": pod.config.pod.state_dir,
        "markers": {rid: {k: v for k, v in vars(m).items() if k != "id"}
                    for rid, m in sorted(markers_mod.Markers(pod).load().items())},
        "lock": VolumeLock(pod).holder(),
    }
    out["lock_holder"] = describe(out["lock"]) if out["lock"] else None  # said once here, shown by reports.status
    for key, name in (("foreground", FOREGROUND), ("background", BACKGROUND)):
        data = state.read(name)
        if isinstance(data, dict):
            if data.get("host") == socket.gethostname() and not data.get("finished"):
                data["alive"] = procs.running(data.get("pid"))
            log = data.get("log")
            tail = pod.run("tail", "-n", "12", "--", log) if log else None
            data["log_tail"] = tail.stdout.splitlines() if tail is not None and tail.ok else []
        out[key] = data
    last = state.read("last-fix")
    if isinstance(last, dict):
        out["last_fix"] = {"started": last.get("started"), "summary": last.get("summary"),
                           "repairs": {r["id"]: r["status"] for r in last.get("repairs", [])},
                           "background": last.get("worker", False)}
    else:
        out["last_fix"] = None
    return out
