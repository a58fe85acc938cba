"""The pod as checks see it: the config, the testinfra host, and commands with timeouts.

>>> pod = Pod(cfg, testinfra.get_host("local://"))
>>> pod.run("ffmpeg", "-version").ok
True
"""
from __future__ import annotations

import shlex
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from podcheck.config import Config
from podcheck.host import early

KILL_GRACE = 2  # seconds between `timeout`'s TERM and its KILL
#: Set in the environment of every command `Pod.run` starts: at the deadline every process that still
#: carries the command's tag is signalled, also a daemon child in a session of its own (setsid) that
#: `timeout`'s group kill misses, or one that keeps the command's stdout open after it exited.
RUN_TAG_ENV = "PODCHECK_RUN"
# Stop every process whose environment holds exactly $1 (NAME=value): TERM, then KILL what is left after
# $2 seconds (0: KILL at once); prints their pids. One grep reads every environment.
REAP = r"""
running() {  # not gone, not a zombie (one the host's init has not reaped yet)
  [ -r "/proc/$1/status" ] || return 1
  s=; while read -r k v _; do [ "$k" = State: ] && { s=$v; break; }; done < "/proc/$1/status"
  [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]
}
pids=$(grep -lxzF -- "$1" /proc/[0-9]*/environ 2>/dev/null | sed 's,^/proc/,,; s,/environ$,,')
[ -n "$pids" ] || exit 0
left=$pids; n=0
if [ "$2" != 0 ]; then
  kill -s TERM $pids 2>/dev/null
  while [ $n -lt $(( $2 * 10 )) ]; do
    left=; for p in $pids; do running "$p" && left="$left $p"; done
    [ -n "$left" ] || break
    sleep 0.1; n=$((n + 1))
  done
fi
[ -z "$left" ] || kill -s KILL $left 2>/dev/null
echo $pids; exit 0
"""


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
    target: str | None = None  # the --hosts spec, where the backend's id is not it (an image's container)

    @property
    def is_local(self) -> bool:
        return self.host.backend.NAME == "local"

    @property
    def name(self) -> str:
        """'local', the --hosts spec of an image, or the backend's id such as 'ssh://127.0.0.1'."""
        return "local" if self.is_local else self.target or self.host.backend.get_pytest_id()

    def run(self, *argv: str, timeout: float | None = None, env: dict[str, str] | None = None) -> Ran:
        """Run argv on the host under `timeout` (default `[pod] command_timeout`); never raises on rc.

        The deadline ends the whole command: `timeout` signals its process group, and what still
        carries the command's tag then (a setsid'd child, a daemon holding stdout open) is sent TERM,
        then KILL after KILL_GRACE, from the host's side. Such a command reads as timed out."""
        limit = float(timeout if timeout is not None else self.config.pod.command_timeout)
        adopted = early.adopt(list(argv), limit, env) if self.is_local else None
        tag = adopted.tag if adopted else new_tag()
        command = shlex.join(run_prefix(limit, tag, env) + [str(a) for a in argv])
        started = adopted.started if adopted else time.monotonic()
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = adopted.wait() if adopted else self.host.run(command)
            except Exception as exc:  # noqa: BLE001 - a backend that broke (ssh gone) is a result, not a crash
                box["error"] = exc

        worker = threading.Thread(target=target, daemon=True)
        worker.start()
        worker.join(max(0.0, limit + 0.2 - (time.monotonic() - started)))  # `timeout` sends its TERM at `limit`
        reaped = ""
        if worker.is_alive() or _timed_out(box.get("result"), limit, time.monotonic() - started):
            reaped = self._reap(tag, worker)
        seconds = time.monotonic() - started
        if "result" in box:
            r = box["result"]
            rc = 124 if reaped and not _timed_out(r, limit, seconds) else r.rc
            return Ran(list(argv), rc, _decoded(r.stdout_bytes), _decoded(r.stderr_bytes) + reaped, seconds, limit)
        if "error" in box:
            return Ran(list(argv), 255, "", host_error(box["error"]), seconds, limit)
        return Ran(list(argv), 124, "", "host did not answer" + reaped, seconds, limit)

    def _reap(self, tag: str, worker: threading.Thread) -> str:
        """TERM, then KILL after KILL_GRACE, what still carries `tag`; waits for the command's pipes to close."""
        try:
            ran = self.host.run(shlex.join(["timeout", str(KILL_GRACE + 5), "sh", "-c", REAP, "sh", tag,
                                            str(KILL_GRACE)]))
        except Exception:  # noqa: BLE001 - the host is gone: nothing to signal there
            return ""
        worker.join(KILL_GRACE + 1)
        pids = [p for p in ran.stdout.split() if p.isdigit()]
        return f"\npodcheck: at the deadline, stopped what the command left running (pids {', '.join(pids)})" \
            if pids else ""

    def exists(self, path: str) -> bool:
        return self.run("test", "-e", path).ok

    def is_dir(self, path: str) -> bool:
        return self.run("test", "-d", path).ok

    def read_text(self, path: str, timeout: float | None = None) -> str | None:
        """A file's text on the host, or None when it cannot be read."""
        ran = self.run("cat", "--", path, timeout=timeout)
        return ran.stdout if ran.ok else None


def start_early(argv: list[str], timeout: float) -> None:
    """Start `argv` on the local host now, as `Pod.run(*argv, timeout=timeout)` would, for that call
    to adopt (podcheck.host.early)."""
    tag = new_tag()
    early.start(argv, timeout, tag, run_prefix(timeout, tag))


def new_tag() -> str:
    return f"{RUN_TAG_ENV}={uuid.uuid4().hex}"


def run_prefix(limit: float, tag: str, env: dict[str, str] | None = None) -> list[str]:
    """What Pod.run puts before a command: coreutils `timeout` with its KILL grace, and `env` with the
    command's tag and `env`."""
    return ["timeout", "-k", str(KILL_GRACE), f"{limit:g}", "env", tag, *(f"{k}={v}" for k, v in (env or {}).items())]


def _timed_out(result: Any, limit: float, seconds: float) -> bool:
    return result is not None and Ran([], result.rc, "", "", seconds, limit).timed_out


def host_error(exc: BaseException) -> str:
    """One line on why the backend failed. testinfra's ssh backend raises its CommandResult when ssh
    itself exits 255: ssh's own message (its stderr) is the line, not the object's repr."""
    result = exc.args[0] if exc.args else None
    raw = getattr(result, "stderr_bytes", None) or getattr(result, "_stderr", None)
    if raw:
        lines = [ln.strip() for ln in _decoded(raw).splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return f"host error: {' '.join(str(exc).split())[:300]}"


def _decoded(data: bytes | str) -> str:
    """A command's output as text; bytes that are not UTF-8 become U+FFFD instead of raising."""
    return data if isinstance(data, str) else data.decode("utf-8", errors="replace")


def quote(argv: Sequence[str]) -> str:
    """argv as one shell-safe line, for messages and plans."""
    return shlex.join([str(a) for a in argv])
