"""A fix run's progress on the pod: `{state_dir}/<name>.json` (what runs now, what ran) and `<name>.log`
(every command's tail), redacted; what `podcheck status` and serve read back."""
from __future__ import annotations

import os
import socket
import time
from typing import Any, Callable

from podcheck.host.files import append_text
from podcheck.host.pod import Pod
from podcheck.host.state import State
from podcheck.reports.redact import Redactor
from podcheck.reports.status import elapsed

FOREGROUND, BACKGROUND = "fix-progress", "background"

_REDACTOR: Any = None


def redact(text: str) -> str:
    """Text without secrets (URL credentials in an index URL, tokens in pip's output...), before it is
    printed or written to a log: the reports' one redaction layer."""
    global _REDACTOR
    if _REDACTOR is None:
        _REDACTOR = Redactor.from_env(os.environ)
    return _REDACTOR.text(text)


class Progress:
    """`{state_dir}/<name>.json` (what runs now, what ran) and `<name>.log` (every command's tail)."""

    def __init__(self, pod: Pod, name: str, token: str, queue: list[str] | None = None):
        self.pod, self.name = pod, name
        self.state = State(pod)
        self.log_path = f"{pod.config.pod.state_dir}/{'fix' if name == FOREGROUND else name}.log"
        self.data: dict[str, Any] = {"pid": os.getpid(), "host": socket.gethostname(), "token": token,
                                     "started": time.time(), "finished": None, "current": None,
                                     "state": "running", "queue": queue or [], "log": self.log_path,
                                     "steps": []}
        self._pending: list[str] = []  # log lines not written yet: one write per step, not per command
        pod.run("sh", "-c", '[ "$(stat -c %s -- "$1" 2>/dev/null || echo 0)" -gt 5000000 ] && mv -f -- "$1" "$1.1"; '
                'exit 0', "sh", self.log_path)  # keep one old log, not an ever-growing one
        self.log(f"=== {time.strftime('%Y-%m-%d %H:%M:%S')} podcheck --fix ({name}), pid {os.getpid()}")
        self._save()

    def step(self, rid: str, status: str, message: str) -> None:
        now = time.time()
        steps = self.data["steps"]
        entry = next((s for s in steps if s["id"] == rid), None)
        if entry is None:
            entry = {"id": rid, "started": now}
            steps.append(entry)
        entry.update(status=status, message=message)
        if status != "running":
            entry["finished"] = now
        self.data["current"] = rid if status == "running" else None
        self.log(f"--- {rid}: {status}: {message}")
        self._save()

    def watcher(self, say: Callable[[str], None]) -> Callable[[dict[str, Any] | None], None]:
        """For Context.progress: print the command a repair runs, a heartbeat with its elapsed time and
        last output line, and keep the same in the document (`running`) for status and serve."""
        def seen(running: dict[str, Any] | None) -> None:
            if running is not None and not running["elapsed_s"]:
                say(f"  $ {running['command']}")
            elif running is not None:
                line = f": {running['last_line']}" if running.get("last_line") else ""
                say(f"  ... still running after {elapsed(running['elapsed_s'])}{line}")
            self.data["running"] = running
            self._save()
        return seen

    def finish(self) -> None:
        self.data.update(finished=time.time(), current=None, state="done", running=None)
        self._save()

    def log(self, text: str) -> None:
        self._pending.append(redact(text.rstrip("\n")) + "\n")
        if self.pod.is_local:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            append(self.pod, self.log_path, "".join(self._pending))
            self._pending = []

    def _save(self) -> None:
        self._flush()
        try:
            self.state.write(self.name, self.data, redact=True)
        except OSError:
            pass


def append(pod: Pod, path: str, text: str) -> None:
    """Append text to a file on the pod (a log; never fatal)."""
    if pod.is_local:
        try:
            append_text(path, text)
        except OSError:
            pass
        return
    pod.run("sh", "-c", '[ -L "$2" ] && exit 3; mkdir -p "$(dirname "$2")" && printf %s "$1" >> "$2"', "sh",
            text[-60000:], path)
