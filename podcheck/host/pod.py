"""The pod as checks see it: the config, the testinfra host, and commands with timeouts.

>>> pod = Pod(cfg, testinfra.get_host("local://"))
>>> pod.run("ffmpeg", "-version").ok
True
"""
from __future__ import annotations

import shlex
import threading
import time
from dataclasses import dataclass
from typing import Any, Sequence

from podcheck.config import Config

KILL_GRACE = 2  # seconds between `timeout`'s TERM and its KILL


@dataclass
class Ran:
    """What one command did, run under coreutils `timeout` on the host."""

    argv: list[str]
    rc: int
    stdout: str
    stderr: str
    seconds: float
    timeout: float

    @property
    def ok(self) -> bool:
        return self.rc == 0

    @property
    def timed_out(self) -> bool:
        """124 from `timeout`, or 137 when its KILL came after the limit (not an OOM kill)."""
        return self.rc == 124 or (self.rc == 137 and self.seconds >= self.timeout)

    @property
    def not_found(self) -> bool:
        return self.rc == 127

    @property
    def signal(self) -> int | None:
        """The signal that killed the command, when one did (sh reports 128+N, Popen -N)."""
        if self.rc < 0:
            return -self.rc
        if 128 < self.rc < 160 and not self.timed_out:
            return self.rc - 128
        return None

    def why(self) -> str:
        """One line on how the command failed, for a check's message."""
        name = self.argv[0] if self.argv else "command"
        if self.timed_out:
            return f"`{name}` timed out after {self.timeout:g} s"
        if self.not_found:
            return f"`{name}` not found"
        if self.signal:
            return f"`{name}` died by signal {self.signal}"
        tail = (self.stderr or self.stdout).strip().splitlines()
        return f"`{name}` exited {self.rc}" + (f": {tail[-1][:200]}" if tail else "")


@dataclass
class Pod:
    """The config and the host of one pod; shared by every check of a run."""

    config: Config
    host: Any  # testinfra.host.Host

    @property
    def is_local(self) -> bool:
        return self.host.backend.NAME == "local"

    @property
    def name(self) -> str:
        """'local', or the backend's id such as 'ssh://127.0.0.1'."""
        return "local" if self.is_local else self.host.backend.get_pytest_id()

    def run(self, *argv: str, timeout: float | None = None, env: dict[str, str] | None = None) -> Ran:
        """Run argv on the host under `timeout` (default `[pod] command_timeout`); never raises on rc."""
        limit = float(timeout if timeout is not None else self.config.pod.command_timeout)
        prefix = ["timeout", "-k", str(KILL_GRACE), f"{limit:g}"]
        if env:
            prefix += ["env"] + [f"{k}={v}" for k, v in env.items()]
        command = shlex.join(prefix + [str(a) for a in argv])
        started = time.monotonic()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = self.host.run(command)
            except Exception as exc:  # a backend that broke (ssh gone) is a result, not a crash
                box["error"] = exc

        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        worker.join(limit + KILL_GRACE + 5)
        seconds = time.monotonic() - started
        if "result" in box:
            r = box["result"]
            return Ran(list(argv), r.rc, r.stdout, r.stderr, seconds, limit)
        if "error" in box:
            return Ran(list(argv), 255, "", f"host error: {box['error']}", seconds, limit)
        return Ran(list(argv), 124, "", "host did not answer", seconds, limit)

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path).ok

    def is_dir(self, path: str) -> bool:
        return self.run("test", "-d", path).ok

    def read_text(self, path: str, timeout: float | None = None) -> str | None:
        """A file's text on the host, or None when it cannot be read."""
        ran = self.run("cat", "--", path, timeout=timeout)
        return ran.stdout if ran.ok else None


def quote(argv: Sequence[str]) -> str:
    """argv as one shell-safe line, for messages and plans."""
    return shlex.join([str(a) for a in argv])
