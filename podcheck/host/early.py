"""Commands started before podcheck's own imports, and adopted later by `Pod.run`.

The facts probe imports torch in the pod python: seconds that podcheck cannot avoid. A plain local
run starts that probe first thing (podcheck.cli.boot), so the pod's `import torch` overlaps
podcheck's start (typer, pytest, testinfra, collecting the checks). `Pod.run` then adopts the
running command when it asks for exactly the same one (argv, timeout and env), and times it from
its real start; nothing else changes (the deadline, the tag every process of it carries, the
reaping). A command nobody adopted is stopped when its run ends. Only the standard library here.
"""
from __future__ import annotations

import atexit
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Any

_started: dict[tuple[Any, ...], "Early"] = {}
_lock = threading.Lock()


@dataclass
class Output:
    """What the command printed, in the shape of testinfra's CommandResult that Pod.run reads."""

    rc: int
    stdout_bytes: bytes
    stderr_bytes: bytes


@dataclass
class Early:
    """One command started early: its process, the tag its environment carries, and its start."""

    proc: subprocess.Popen
    tag: str
    started: float

    def wait(self) -> Output:
        out, err = self.proc.communicate()
        return Output(self.proc.returncode, out, err)


def key(argv: list[str], timeout: float, env: dict[str, str] | None) -> tuple[Any, ...]:
    return (tuple(str(a) for a in argv), float(timeout), tuple(sorted((env or {}).items())))


def start(argv: list[str], timeout: float, tag: str, prefix: list[str]) -> None:
    """Start `prefix + argv` now (`prefix`: Pod.run's `timeout ... env TAG`), for a later Pod.run(*argv)."""
    try:
        proc = subprocess.Popen(prefix + [str(a) for a in argv], stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError:
        return  # Pod.run starts it again and says why it cannot
    with _lock:
        _started[key(argv, timeout, None)] = Early(proc, tag, time.monotonic())


def adopt(argv: list[str], timeout: float, env: dict[str, str] | None) -> Early | None:
    """The early command that is exactly this one, once (a second identical run starts afresh)."""
    with _lock:
        return _started.pop(key(argv, timeout, env), None)


@atexit.register
def stop_unadopted() -> None:
    """A probe no check asked for (a usage error, a run that needed no facts) dies with its run."""
    with _lock:
        left = list(_started.values())
        _started.clear()
    for early in left:
        if early.proc.poll() is None:
            try:
                os.kill(early.proc.pid, signal.SIGTERM)  # `timeout` passes it on to the command's group
                early.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                early.proc.kill()
