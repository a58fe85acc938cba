"""podcheck's managed sync loop: one `rclone sync|copy` per user folder, pass after pass.

Each pass maps `{workspace}/<folder>/<user>` to `<remote>:<remote_root>/<folder>/<user>` for every
folder of `[sync] folders` and every user (names validated by podcheck.domain.users before any path is
built; a folder that is a symlink is not followed), with `[sync]` transfers, checkers, tpslimit,
min_age and excludes, logging to `[sync] log`. The loop keeps a pidfile and a status document
(last successful pass, per-user results) in state_dir, both written atomically.

Which users: the pod's own `[pod] user` when set (each pod syncs its person's folders, so pods
sharing a volume never upload the same files at once), else `[pod] users`, else every folder
under `{workspace}/output`. Files are named by that scope: `syncloop-<user|all>.{json,pid}` and
`syncloop-<user|all>-status.json`.

What protects the remote: the default mode is `copy`, which never deletes there. In `sync` mode
(a mirror) a transfer whose local folder holds no file is refused while the remote folder holds
any (a new pod's empty, just-created folder never wipes a user's backup), and every sync runs with
`--max-delete [sync] max_delete`, so a folder emptied by mistake costs at most that many files.

This module is the loop program and what it is started with: settings() (from the config), plan(),
destination(), judge_mapping(). Starting, stopping and watching it is podcheck.domain.syncloop_control's.
Pod side: `python -m podcheck.syncloop SETTINGS.json`. It needs only the standard library and the
files in SHIPPED (podcheck.domain.users, podcheck.host.files and what they import), so for a remote
pod those files are shipped to `<state_dir>/syncloop-code/` and run with the pod's python3.
"""
from __future__ import annotations

import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from podcheck.domain.users import KINDS, invalid_reason, require_valid
from podcheck.host.files import append_text, write_atomic

MARKER = "podcheck.syncloop"   # in the loop's argv: tells our loop from a reused pid
LOG_ROTATE_BYTES = 20 * 1024 * 1024
#: What a remote pod gets of podcheck to run this loop: paths below podcheck/, this module and everything
#: it imports (the wing packages' __init__ files import nothing, so these run alone).
SHIPPED = ("__init__.py", "host/__init__.py", "host/files.py", "host/paths.py", "host/sides.py", "domain/__init__.py",
           "domain/users.py", "syncloop.py")


class SyncLoopError(Exception):
    """The loop could not be started or stopped; one line."""


# --- the settings: from the config, on podcheck's side --------------------------------------------

def scope(config: Any) -> str:
    """'alice' for a pod that serves alice, 'all' otherwise."""
    user = config.pod.user
    return require_valid(user) if user else "all"


def names(config: Any) -> dict[str, str]:
    """State document names of this pod's loop: settings, status; and the pidfile path."""
    key = scope(config)
    return {"settings": f"syncloop-{key}", "status": f"syncloop-{key}-status",
            "pidfile": f"{config.pod.state_dir}/syncloop-{key}.pid"}


def settings(config: Any) -> dict[str, Any]:
    """Everything the loop needs, from `[pod]` and `[sync]`: the loop reads nothing else."""
    s, state_dir = config.sync, config.pod.state_dir
    for folder in s.folders:
        why = invalid_reason(folder)
        if why:
            raise SyncLoopError(f"[sync] folders entry {folder!r} {why}")
    user = config.pod.user
    n = names(config)
    return {
        "scope": scope(config),
        "workspace": config.pod.workspace,
        "users": [user] if user else list(config.pod.users),
        "folders": list(s.folders),
        "remote": s.remote,
        "remote_root": s.remote_root.strip("/"),
        "rclone": "rclone",
        "rclone_config": s.rclone_config,
        "mode": s.mode,
        "max_delete": s.max_delete,
        "transfers": s.transfers,
        "checkers": s.checkers,
        "tpslimit": s.tpslimit,
        "min_age": s.min_age,
        "excludes": list(s.excludes),
        "interval_seconds": s.interval_seconds,
        "pass_timeout_seconds": s.pass_timeout_seconds,
        "log": s.log,
        "status": f"{state_dir}/{n['status']}.json",
        "pidfile": n["pidfile"],
    }


def destination(settings: dict[str, Any], folder: str, user: str) -> str:
    """`<remote>:<remote_root>/<folder>/<user>` for a valid user."""
    root = settings["remote_root"]
    return f"{settings['remote']}:{root + '/' if root else ''}{folder}/{require_valid(user)}"


def plan(settings: dict[str, Any], users: list[str]) -> list[tuple[str, str]]:
    """(source, destination) of every transfer a pass makes for `users` (invalid names are left out)."""
    out = []
    for user in users:
        if invalid_reason(user):
            continue
        for folder in settings["folders"]:
            out.append((f"{settings['workspace']}/{folder}/{user}", destination(settings, folder, user)))
    return out


def judge_mapping(workspace: str, comfyui_dir: str, remote: str, remote_root: str, src: str, dst: str) -> str | None:
    """What is wrong with syncing `src` to `dst`, or None. A shared folder (all of output/, input/, the
    workspace, ComfyUI's own output/) mixes users; a user's folder must go to that user's remote folder.
    Other sources (models, a subfolder) are not judged."""
    import posixpath

    if not src.startswith("/"):
        return None
    src = posixpath.normpath(src)
    root = remote_root.strip("/")
    shared = {posixpath.normpath(p) for p in
              [workspace, f"{comfyui_dir}/output", f"{comfyui_dir}/input", *(f"{workspace}/{k}" for k in KINDS)]}
    if src in shared:
        return (f"syncs all of {src} to {dst}: that mixes every user's files in one folder; sync each "
                f"{workspace}/<folder>/<user> to {remote}:{root + '/' if root else ''}<folder>/<user>")
    parent, user = posixpath.split(src)
    folder = posixpath.basename(parent)
    if folder not in KINDS or parent != posixpath.normpath(f"{workspace}/{folder}"):
        return None
    why = invalid_reason(user)
    if why:
        return f"syncs {src}, whose user name {why}"
    expected = f"{remote}:{root + '/' if root else ''}{folder}/{user}"
    if dst.rstrip("/") != expected:
        return f"maps {src} to {dst}, not to {expected}"
    return None


# --- pod side: the loop ---------------------------------------------------------------------------

def _stamp(t: float | None = None) -> str:
    return time.strftime("%Y/%m/%d %H:%M:%S", time.localtime(t))


class Loop:
    """Runs passes until SIGTERM; one instance per scope (a lock next to the pidfile)."""

    def __init__(self, settings: dict[str, Any]):
        self.s = settings
        self.stopping = threading.Event()
        self.child: subprocess.Popen | None = None
        self.state: dict[str, Any] = {}

    def request_stop(self, *_: Any) -> None:
        self.stopping.set()
        child = self.child
        if child is not None and child.poll() is None:
            try:
                os.killpg(child.pid, signal.SIGTERM)
            except OSError:
                pass

    def run(self) -> int:
        pidfile = Path(self.s["pidfile"])
        pidfile.parent.mkdir(parents=True, exist_ok=True)
        try:  # never through a planted link (open(..., "w") truncated its target)
            lock = os.fdopen(os.open(f"{pidfile}.lock", os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644), "w")
        except OSError as exc:
            self.log(f"cannot open {pidfile}.lock ({exc.strerror}); exiting")
            return 3
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.log(f"another sync loop holds {pidfile}.lock; exiting")
            return 3
        write_atomic(pidfile, f"{os.getpid()}\n", links=False)
        self.state = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
                      "settings": self.s, "passes": 0, "last_pass": None, "last_success": None,
                      "users": {}, "stopped": None}
        self.save()
        self.log(f"started (pid {os.getpid()}), every {self.s['interval_seconds']} s")
        try:
            while not self.stopping.is_set():
                self.one_pass()
                self.stopping.wait(self.s["interval_seconds"])
        finally:
            self.state["stopped"] = time.time()
            self.save()
            try:
                if pidfile.read_text().split()[0] == str(os.getpid()):
                    pidfile.unlink()
            except (OSError, IndexError):
                pass
            self.log("stopped")
        return 0

    def users(self) -> list[str]:
        if self.s["users"]:
            return list(self.s["users"])
        root = Path(self.s["workspace"]) / "output"
        try:
            return sorted(e.name for e in os.scandir(root) if not e.name.startswith(".") and not e.is_file())
        except OSError:
            return []

    def one_pass(self) -> None:
        started = time.time()
        self._rotate_log()
        results: dict[str, Any] = {}
        ok = True
        for user in self.users():
            why = invalid_reason(user)
            if why:
                results[user] = {"skipped": f"user name {why}"}
                continue
            results[user] = {}
            for folder in self.s["folders"]:
                if self.stopping.is_set():
                    return
                src = f"{self.s['workspace']}/{folder}/{user}"
                if os.path.islink(src):
                    results[user][folder] = {"skipped": "is a symlink (not followed)"}
                    continue
                if not os.path.isdir(src):
                    results[user][folder] = {"skipped": "no such folder"}
                    continue
                dst = destination(self.s, folder, user)
                result = self.refusal(src, dst, f"{user} {folder}") or self.transfer(src, dst, f"{user} {folder}")
                results[user][folder] = result
                ok = ok and result["rc"] == 0
        finished = time.time()
        self.state["passes"] += 1
        self.state["last_pass"] = {"started": started, "finished": finished, "ok": ok}
        if ok:
            self.state["last_success"] = finished
        self.state["users"] = results
        self.save()

    def refusal(self, src: str, dst: str, label: str) -> dict[str, Any] | None:
        """In sync mode, a failed result instead of mirroring a folder without files over a remote
        folder with files (a new or emptied workspace would delete the user's backup); else None."""
        if self.s["mode"] != "sync" or _holds_a_file(src):
            return None
        started = time.time()
        argv = [self.s["rclone"], "lsf", "--recursive", "--files-only", "--config", self.s["rclone_config"], dst]
        try:
            ran = subprocess.run(argv, check=False, stdin=subprocess.DEVNULL, capture_output=True, timeout=300,
                                 env={**os.environ, "RCLONE_ASK_PASSWORD": "false"})
        except (OSError, subprocess.TimeoutExpired) as exc:
            why = f"cannot list {dst} ({exc}); not mirroring an empty folder over it"
            return {"rc": 1, "at": started, "seconds": round(time.time() - started, 3), "error": why}
        if ran.returncode in (0, 3) and not ran.stdout.strip():
            return None  # the remote folder is empty or missing (rclone's exit 3) too: nothing to lose
        if ran.returncode != 0:
            why = f"cannot list {dst} (rclone lsf exited {ran.returncode}); not mirroring an empty folder over it"
        else:
            count = len(ran.stdout.splitlines())
            why = (f"refused to sync: {src} holds no file while {dst} holds {count}; a sync would delete them. "
                   f"Restore them with `rclone copy {dst} {src}`, or set [sync] mode = \"copy\"")
        self.log(f"{label}: {why}")
        return {"rc": 1, "at": started, "seconds": round(time.time() - started, 3), "error": why, "refused": True}

    def transfer(self, src: str, dst: str, label: str) -> dict[str, Any]:
        s = self.s
        guard = ["--max-delete", str(s.get("max_delete", 100))] if s["mode"] == "sync" else []
        argv = [s["rclone"], s["mode"], src, dst, *guard, "--config", s["rclone_config"],
                "--transfers", str(s["transfers"]), "--checkers", str(s["checkers"]),
                "--tpslimit", str(s["tpslimit"]), "--min-age", s["min_age"],
                *[a for pattern in s["excludes"] for a in ("--exclude", pattern)],
                "--log-file", s["log"], "--log-level", "INFO"]
        self.log(f"{label}: rclone {s['mode']} {src} {dst}")
        offset = self._log_size()
        started = time.time()
        try:
            self.child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.PIPE, start_new_session=True,
                                          env={**os.environ, "RCLONE_ASK_PASSWORD": "false"})
        except OSError as exc:
            return {"rc": 127, "at": started, "seconds": 0.0, "error": f"cannot run {s['rclone']}: {exc.strerror}"}
        try:
            _, err = self.child.communicate(timeout=s["pass_timeout_seconds"])
            rc = self.child.returncode
        except subprocess.TimeoutExpired:
            os.killpg(self.child.pid, signal.SIGKILL)
            _, err = self.child.communicate()
            rc, err = 124, f"timed out after {s['pass_timeout_seconds']:g} s".encode()
        self.child = None
        result = {"rc": rc, "at": started, "seconds": round(time.time() - started, 3), "error": ""}
        if rc != 0:
            result["error"] = self._last_error(offset) or err.decode(errors="replace").strip()[-300:] \
                or f"rclone exited {rc}"
        return result

    # The log: rclone appends to it; the loop adds its own lines in rclone's timestamp format.
    def log(self, text: str) -> None:
        try:
            append_text(self.s["log"], f"{_stamp()} podcheck-syncloop: {text}\n")
        except OSError:
            pass

    def _log_size(self) -> int:
        try:
            return os.path.getsize(self.s["log"])
        except OSError:
            return 0

    def _last_error(self, offset: int) -> str:
        try:
            with open(self.s["log"], "rb") as fh:
                fh.seek(max(offset, self._log_size() - 65536))
                lines = fh.read().decode(errors="replace").splitlines()
        except OSError:
            return ""
        errors = [ln for ln in lines if " ERROR " in ln or "Failed to" in ln]
        return errors[-1][-300:] if errors else ""

    def _rotate_log(self) -> None:
        if self._log_size() > LOG_ROTATE_BYTES:
            try:
                os.replace(self.s["log"], self.s["log"] + ".1")
            except OSError:
                pass

    def save(self) -> None:
        write_atomic(self.s["status"], json.dumps(self.state, indent=2, sort_keys=True) + "\n", links=False)


def _holds_a_file(folder: str) -> bool:
    """Whether anything but a folder lies under `folder` (links are not followed)."""
    for _, _, files in os.walk(folder):
        if files:
            return True
    return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m podcheck.syncloop SETTINGS.json", file=sys.stderr)
        return 2
    with open(args[0]) as fh:
        loop = Loop(json.load(fh))
    signal.signal(signal.SIGTERM, loop.request_stop)
    signal.signal(signal.SIGINT, loop.request_stop)
    return loop.run()


if __name__ == "__main__":
    sys.exit(main())
