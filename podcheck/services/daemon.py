"""What watch and serve share as long-running services: one instance per pod (a locked pidfile), the
signals that stop them, and the loop that runs a round every interval.

    with daemon.pidfile(path, "podcheck watch"), daemon.on_signals(handler):
        daemon.every(30, one_round, lambda: stopping, complain)
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from podcheck.host import procs
from podcheck.host.files import LinkRefused, refuse_links

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class CannotStart(Exception):
    """A long-running mode cannot start (bad setting, pod already watched, port taken): one line."""


class AlreadyRunning(CannotStart):
    """Another instance holds this pod's pidfile; the message says who."""


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def pidfile_path(state_dir: str, name: str, host: str | None = None) -> Path:
    """`{state_dir}/{name}-{host}.pid`: one service of a kind per pod (host: this machine's name)."""
    return Path(state_dir) / f"{name}-{host or socket.gethostname()}.pid"


@contextmanager
def pidfile(path: Path, what: str = "podcheck watch") -> Iterator[None]:
    """Hold `path` (flock) for the life of this service; it names our pid. A dead holder's lock is gone
    with its process, so a stale pidfile never blocks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        refuse_links(path)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        raise CannotStart(str(exc) if isinstance(exc, LinkRefused) else f"cannot open {path}: {exc.strerror}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise AlreadyRunning(_busy(path, what)) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": iso(time.time())}).encode() + b"\n")
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, naming the last holder


def holder(path: Path, marker: str = "podcheck") -> dict[str, Any] | None:
    """What the pidfile names ({pid, host, started}) while that process runs here, else None."""
    try:
        info = json.loads(path.read_text())
        return info if procs.running(int(info["pid"]), marker=marker) else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _busy(path: Path, what: str) -> str:
    try:
        info = json.loads(path.read_text())
        who = f"pid {info['pid']} since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        who = "another process"
    return f"{what} already runs on this pod ({who}; pidfile {path}): stop it first"


@contextmanager
def on_signals(handler: Callable[[int, Any], None], signals: tuple[int, ...] = STOP_SIGNALS) -> Iterator[None]:
    """`handler` for `signals` while the block runs; the old handlers come back after it."""
    old = {s: signal.signal(s, handler) for s in signals}
    try:
        yield
    finally:
        for s, previous in old.items():
            signal.signal(s, previous)


def every(interval: float, step: Callable[[], None], stopped: Callable[[], bool],
          on_error: Callable[[Exception], None]) -> None:
    """Run `step` every `interval` s until `stopped()`; a failed round goes to `on_error`, and the loop goes on."""
    while not stopped():
        started = time.monotonic()
        try:
            step()
        except Exception as exc:  # noqa: BLE001 - a broken round (a bug, a full disk) must not end the service
            on_error(exc)
        if not stopped():
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
