"""One fixer per volume: a lock file in `state_dir` that works across pods, not only processes.

`{state_dir}/fix.lock` appears by hard-linking a complete temp file to it: link() is atomic and
fails when the name exists, on a local disk and on NFS alike (flock would only cover one kernel).
It holds JSON: token, host, pid, the pid's start time, started, heartbeat, lease_s, what. The
holder rewrites its heartbeat every lease/4 s. A waiter takes the lock over when the holder is a
dead process on its own machine, or when the heartbeat is older than the lease (a pod that died):
holding a short takeover mutex (`fix.lock.takeover`, created the same exclusive way), it removes
the lock only if it still holds the stale content it judged, then races for a new lock like any
waiter; the commands the dead fixer left running on the pod (tagged with its token) are killed. Every step goes through the pod, so the lock lives on the
pod's volume whether podcheck runs there or over ssh.
"""
from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any, Callable

import psutil

from podcheck.fix.repair import TOKEN_ENV

_CREATE = ('mkdir -p "$(dirname "$2")" || exit 2; t="$2.$3.tmp"; printf %s "$1" > "$t" || exit 2; '
           'ln "$t" "$2" 2>/dev/null; rc=$?; rm -f "$t"; exit $rc')
_HEARTBEAT = ('grep -qF "\\"token\\": \\"$3\\"" "$2" 2>/dev/null || exit 3; t="$2.$3.hb"; '
              'printf %s "$1" > "$t" && mv -f "$t" "$2"')
_RELEASE = 'grep -qF "\\"token\\": \\"$2\\"" "$1" 2>/dev/null && rm -f "$1"; exit 0'
# Remove a file only if it still holds exactly the given text (compare-and-remove, as close as a shell gets).
_REMOVE_IF = 'printf %s "$2" | cmp -s - "$1" && rm -f -- "$1"'
MUTEX_STALE = 30.0  # a takeover takes milliseconds; a takeover mutex this old was left by a crash
_REAP = ('for e in /proc/[0-9]*/environ; do grep -qxzF "$1" "$e" 2>/dev/null || continue; '
         'p=${e#/proc/}; p=${p%/environ}; kill -9 "$p" 2>/dev/null && echo "$p"; done; exit 0')


class LockError(Exception):
    """The lock file cannot be created at all (no permission, no volume)."""


class VolumeLock:
    """`with VolumeLock(pod).held(wait, on_wait) as lock:` ... `lock.lost` says whether it was taken from us."""

    def __init__(self, pod: Any, what: str = "podcheck --fix", lease: float | None = None,
                 poll: float = 0.5, name: str = "fix.lock"):
        self.pod = pod
        self.path = f"{pod.config.pod.state_dir}/{name}"
        self.what = what
        self.lease = float(lease if lease is not None else pod.config.fix.lock_lease_seconds)
        self.poll = poll
        self.token = uuid.uuid4().hex
        self.waited = False  # True when another fixer held the lock first
        self.took_over: str | None = None  # why a stale lock was taken over
        self.lost = False
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None
        self._started = time.time()

    # --- the holder's record --------------------------------------------------------------------

    def _record(self) -> str:
        me = psutil.Process()
        return json.dumps({
            "token": self.token, "host": socket.gethostname(), "pid": os.getpid(),
            "pid_started": me.create_time(), "started": self._started, "heartbeat": time.time(),
            "lease_s": self.lease, "what": self.what, "target": self.pod.name,
        }, sort_keys=True)

    def holder(self) -> dict[str, Any] | None:
        """The current holder's record, or None when nobody holds the lock."""
        text = self.pod.read_text(self.path, timeout=10)
        return _parse(text) if text is not None else None

    # --- acquire / release ----------------------------------------------------------------------

    def acquire(self, wait: float, on_wait: Callable[[dict[str, Any]], None] = lambda h: None) -> bool:
        """Take the lock, waiting up to `wait` seconds for another fixer; False when it still holds it."""
        deadline = time.monotonic() + wait
        told: str | None = None
        first_seen: dict[str, float] = {}
        vanished = 0
        while True:
            created = self.pod.run("sh", "-c", _CREATE, "sh", self._record(), self.path, self.token, timeout=10)
            if created.ok:
                self._start_heartbeat()
                return True
            text = self.pod.read_text(self.path, timeout=10)
            if text is None:
                vanished += 1
                if created.rc == 2 or created.timed_out or vanished > 5:  # not "it exists": it cannot be made
                    raise LockError(f"cannot create {self.path}: {created.why()}")
                continue  # released between our two steps: try again
            vanished = 0
            self.waited = True
            holder = _parse(text)
            first_seen.setdefault(text, time.monotonic())
            why = self._stale(holder, time.monotonic() - first_seen[text])
            if why and self._take_over(text):
                self.took_over = why
                if holder and holder.get("token"):
                    self._reap(holder["token"])
                continue
            key = (holder or {}).get("token", text)
            if told != key:
                on_wait(holder or {"what": "an unreadable lock", "host": "?", "pid": "?"})
                told = key
            if time.monotonic() >= deadline:
                return False
            time.sleep(self.poll)

    def release(self) -> None:
        self._stop.set()
        if self._beat is not None:
            self._beat.join(timeout=15)
        if not self.lost:
            self.pod.run("sh", "-c", _RELEASE, "sh", self.path, self.token, timeout=10)

    def held(self, wait: float, on_wait: Callable[[dict[str, Any]], None] = lambda h: None) -> "_Held":
        return _Held(self, wait, on_wait)

    # --- staleness and takeover -----------------------------------------------------------------

    def _stale(self, holder: dict[str, Any] | None, unchanged_for: float) -> str | None:
        """Why the lock may be taken over, or None while its holder lives."""
        if holder is None:
            return f"unreadable lock unchanged for {unchanged_for:.0f} s" if unchanged_for > self.lease else None
        lease = float(holder.get("lease_s") or self.lease)
        if holder.get("host") == socket.gethostname() and not _alive(holder.get("pid"), holder.get("pid_started")):
            return f"its holder, pid {holder.get('pid')} on {holder.get('host')}, is gone"
        age = time.time() - float(holder.get("heartbeat") or 0)
        if age > lease:
            return f"its holder on {holder.get('host')} sent no heartbeat for {age:.0f} s (lease {lease:g} s)"
        if unchanged_for > lease:
            return f"its heartbeat did not move for {unchanged_for:.0f} s (lease {lease:g} s)"
        return None

    def _take_over(self, stale_text: str) -> bool:
        """Remove the lock judged stale, if it still is that one. Only the waiter holding the takeover
        mutex may remove a lock, and it compares the content right before removing it; then every waiter
        races for the lock as usual, where link() lets exactly one win."""
        mutex = f"{self.path}.takeover"
        mine = self._record()
        if not self.pod.run("sh", "-c", _CREATE, "sh", mine, mutex, self.token, timeout=10).ok:
            text = self.pod.read_text(mutex, timeout=10)
            other = _parse(text) if text is not None else None
            if text is not None and (other is None or time.time() - float(other.get("started") or 0) > MUTEX_STALE
                                     or (other.get("host") == socket.gethostname()
                                         and not _alive(other.get("pid"), other.get("pid_started")))):
                self.pod.run("sh", "-c", _REMOVE_IF, "sh", mutex, text, timeout=10)  # left by a crash mid-takeover
            return False
        try:
            return self.pod.run("sh", "-c", _REMOVE_IF, "sh", self.path, stale_text, timeout=10).ok
        finally:
            self.pod.run("sh", "-c", _REMOVE_IF, "sh", mutex, mine, timeout=10)

    def _reap(self, token: str) -> None:
        """Kill what a dead fixer left running on the pod (pip, git...), found by its token."""
        self.pod.run("sh", "-c", _REAP, "sh", f"{TOKEN_ENV}={token}", timeout=30)

    # --- heartbeat ------------------------------------------------------------------------------

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        interval = max(0.2, self.lease / 4)

        def beat() -> None:
            while not self._stop.wait(interval):
                ran = self.pod.run("sh", "-c", _HEARTBEAT, "sh", self._record(), self.path, self.token, timeout=10)
                if ran.rc == 3:
                    self.lost = True
                    return

        self._beat = threading.Thread(target=beat, name="podcheck-lock-heartbeat", daemon=True)
        self._beat.start()


class _Held:
    def __init__(self, lock: VolumeLock, wait: float, on_wait: Callable[[dict[str, Any]], None]):
        self.lock, self.wait, self.on_wait = lock, wait, on_wait
        self.acquired = False

    def __enter__(self) -> VolumeLock:
        self.acquired = self.lock.acquire(self.wait, self.on_wait)
        if not self.acquired:
            raise LockBusy(self.lock.holder() or {}, self.wait)
        return self.lock

    def __exit__(self, *exc: Any) -> None:
        self.lock.release()


class LockBusy(Exception):
    """Another fixer still held the lock when the wait ran out."""

    def __init__(self, holder: dict[str, Any], waited: float):
        self.holder = holder
        super().__init__(f"{describe(holder)} still holds the fix lock after {waited:g} s; nothing was repaired")


def describe(holder: dict[str, Any]) -> str:
    """'podcheck --fix (pid 123 on pod-a, since 12:00:03, heartbeat 2 s ago)'."""
    if not holder:
        return "another fixer"
    since = time.strftime("%H:%M:%S", time.localtime(holder["started"])) if holder.get("started") else "?"
    beat = f", heartbeat {time.time() - holder['heartbeat']:.0f} s ago" if holder.get("heartbeat") else ""
    return f"{holder.get('what', 'a fixer')} (pid {holder.get('pid')} on {holder.get('host')}, since {since}{beat})"


def _parse(text: str) -> dict[str, Any] | None:
    try:
        data = json.loads(text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _alive(pid: Any, started: Any) -> bool:
    """Whether this machine runs process `pid`, started at `started` (a reused pid is another process)."""
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - float(started)) < 1.0
    except (psutil.Error, ValueError, TypeError):
        return False
