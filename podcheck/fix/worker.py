"""Slow repairs in the background: `--fix --background` (or `[fix] background = true`).

The foreground run does the fast repairs, then spawns `python -m podcheck.fix ARGS` (podcheck/fix/__main__.py) in a
session of its own and returns, so the pod's services start without waiting. The background run
waits for the fix lock, runs its queue in order (ComfyUI first when it may precede sage, then sage),
then whatever is due after it (comfyui.relaunch with --use-sage-attention once sage imports), with
its progress in `{state_dir}/background.json` and its log in `{state_dir}/background.log`;
`podcheck status` shows both.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from typing import Any, Callable

from podcheck.host.state import State


def spawn(config: Any, target: Any, opts: Any, queue: list[str], pod: Any, say: Callable[[str], None],
          results: list[Any]) -> int:
    """Start the background run for `queue`, from the check `results` the foreground ended with; its pid."""
    args = {"config": config.source, "target": asdict(target), "profile": opts.profile,
            "select": list(opts.select), "queue": queue, "results": [asdict(r) for r in results]}
    log = f"{config.pod.state_dir}/background.log" if pod.is_local else \
        os.path.join(tempfile.gettempdir(), f"podcheck-background-{os.getpid()}.log")
    os.makedirs(os.path.dirname(log), exist_ok=True)
    with open(log, "a") as sink:
        child = subprocess.Popen([sys.executable, "-m", "podcheck.fix", json.dumps(args)],
                                 stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT,
                                 start_new_session=True, close_fds=True)
    State(pod).write("background", {"pid": child.pid, "host": os.uname().nodename, "queue": queue,
                                    "started": time.time(), "finished": None, "current": None,
                                    "state": "waiting for the fix lock", "steps": [], "log": log})
    say(f"left to the background (pid {child.pid}): {', '.join(queue)}; see `podcheck status`")
    return child.pid
