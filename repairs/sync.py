"""Repairs of the sync area: what can be fixed locally in the rclone config, and podcheck's managed
sync loop (podcheck.syncloop: one rclone run per user folder, started detached with a pidfile).

rclone.conf is backed up (`<file>.podcheck-<timestamp>.bak`, mode kept) before any change, and
rewritten atomically. Credentials are never made up: a missing remote or key is reported.
"""
from __future__ import annotations

import json
import time
from typing import Any

from podcheck import syncloop
from podcheck.domain import rclone, syncloop_control
from podcheck.fix.repair import Context, Outcome, Repair, register
from podcheck.host import shell


def set_keys(text: str, section: str, values: dict[str, str]) -> str:
    """The INI text with `key = value` set in [section] (lines replaced in place, or added at its end)."""
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == f"[{section}]"), None)
    if start is None:
        raise ValueError(f"no [{section}] in the file")
    end = next((i for i in range(start + 1, len(lines)) if lines[i].strip().startswith("[")), len(lines))
    pending = dict(values)
    for i in range(start + 1, end):
        key = lines[i].split("=", 1)[0].strip()
        if "=" in lines[i] and key in pending:
            lines[i] = f"{key} = {pending.pop(key)}"
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # add new keys right after the section's last line, before blank lines
    lines[end:end] = [f"{k} = {v}" for k, v in pending.items()]
    return "\n".join(lines) + "\n"


@register
class SyncConfig(Repair):
    id = "sync.config"
    order = 100
    when = ("sync.enabled",)
    description = "fix the rclone config where it can be fixed locally: modes 0600, the Shared Drive id (team_drive)"
    blast = "safe"

    def apply(self, ctx: Context) -> Outcome:
        s = ctx.cfg.sync
        path = s.rclone_config
        try:
            remotes = rclone.dump(ctx.pod, path)
        except rclone.RcloneError as exc:
            if exc.kind == "missing":
                return Outcome.failed(f"{exc}: create it with `rclone config` (podcheck cannot make up credentials)")
            return Outcome.failed(str(exc))
        if s.remote not in remotes:
            return Outcome.failed(f"remote {s.remote!r} is not in {path}: add it with `rclone config` "
                                  "(podcheck cannot make up credentials)")
        done: list[str] = []
        backup: list[str] = []

        def back_up() -> str | None:
            if not backup:
                dest = f"{path}.podcheck-{time.strftime('%Y%m%d-%H%M%S')}.bak"
                ran = ctx.run("sh", "-c", 'cp -p -- "$1" "$2" && chmod 600 "$2"', "sh", path, dest)
                if not ran.ok:
                    return f"cannot back up {path}: {ran.why()}"
                backup.append(dest)
            return None

        mode = rclone.file_mode(ctx.pod, path)
        if mode is not None and rclone.readable_by_others(mode):
            failure = back_up() or _chmod(ctx, path)
            if failure:
                return Outcome.failed(failure)
            done.append(f"{path}: mode {mode:03o} -> 600")
        locked = rclone.encrypted(ctx.pod, path)  # rewritten through rclone (it re-encrypts), never as text
        text = "" if locked else ctx.pod.read_text(path) or ""
        for name, section in rclone.chain(remotes, s.remote):
            if section.get("type") != "drive":
                continue
            key = str(section.get("service_account_file") or "").strip()
            if key:
                key_path = rclone.expand_path(ctx.pod, key, path)
                key_mode = rclone.file_mode(ctx.pod, key_path)
                if key_mode is not None and rclone.readable_by_others(key_mode):
                    failure = _chmod(ctx, key_path)
                    if failure:
                        return Outcome.failed(failure)
                    done.append(f"{key_path}: mode {key_mode:03o} -> 600")
            values, why = self._drive(ctx, name, section, path)
            if why:
                return Outcome.failed("; ".join(done + [why]))
            if values:
                failure = back_up()
                if failure:
                    return Outcome.failed(failure)
                if locked:
                    failure = _update_encrypted(ctx, path, name, values)
                    if failure:
                        return Outcome.failed("; ".join(done + [failure]))
                else:
                    text = set_keys(text, name, values)
                    ran = shell.write(ctx.run, path, text, mode="600")
                    if not ran.ok:
                        return Outcome.failed(f"cannot rewrite {path}: {ran.why()}")
                done.append(f"[{name}] " + ", ".join(f"{k} = {v or '(empty)'}" for k, v in values.items()))
        if not done:
            return Outcome.unchanged(f"{path}: nothing podcheck can fix locally")
        return Outcome.changed("; ".join(done) + (f" (backup: {backup[0]})" if backup else ""))

    def _drive(self, ctx: Context, name: str, section: dict[str, Any], path: str) -> tuple[dict[str, str], str | None]:
        """The keys to set in a drive section, or why they cannot be found."""
        team, root = str(section.get("team_drive") or "").strip(), str(section.get("root_folder_id") or "").strip()
        service_account = section.get("service_account_file") or section.get("service_account_credentials")
        if team and root:
            # rclone keeps the team-drive scope with root_folder_id as the root: right when the folder is
            # inside the Shared Drive. Only a root the config shows to be another drive's is emptied.
            return ({"root_folder_id": ""} if rclone.root_outside_team_drive(team, root) else {}), None
        if team or not service_account:
            return {}, None
        ran = ctx.probe("rclone", "backend", "drives", f"{name}:", "--config", path, timeout=60)  # a query
        try:
            drives = json.loads(ran.stdout) if ran.ok else None
        except ValueError:
            drives = None
        if not isinstance(drives, list):
            detail = rclone.redact_line((ran.stderr.strip().splitlines() or [ran.why()])[-1])[:300]
            return {}, (f"[{name}] needs team_drive (a service account has no storage of its own), and "
                        f"`rclone backend drives {name}:` did not answer: {detail}; set team_drive by hand")
        if len(drives) != 1:
            listed = ", ".join(f"{d.get('name')} ({d.get('id')})" for d in drives[:10]) or "none"
            return {}, (f"[{name}] needs team_drive, and the service account sees {len(drives)} Shared Drives "
                        f"({listed}): " + ("add it to one as a member" if not drives else "set team_drive to one of them"))
        return {"team_drive": str(drives[0].get("id")), "root_folder_id": ""}, None


def _update_encrypted(ctx: Context, path: str, name: str, values: dict[str, str]) -> str | None:
    """Set keys of an encrypted config with `rclone config update` (it decrypts with RCLONE_CONFIG_PASS
    from the environment and writes the file encrypted again)."""
    for key, value in values.items():
        ran = ctx.run("rclone", "config", "update", name, key, value, "--non-interactive", "--config", path,
                      env={"RCLONE_ASK_PASSWORD": "false"}, timeout=60)
        if not ran.ok:
            return f"cannot update [{name}] {key} in encrypted {path}: {rclone.redact_line(ran.why())[:300]}"
    return None


def _chmod(ctx: Context, path: str) -> str | None:
    ran = ctx.run("chmod", "600", "--", path)
    return None if ran.ok else f"cannot chmod 600 {path}: {ran.why()}"


@register
class SyncStart(Repair):
    id = "sync.start"
    order = 110
    when = ("sync.enabled",)
    description = "start podcheck's managed sync loop (one rclone run per user folder), or restart a stale one"
    needs = ("sync.config", "isolation.user_dirs")
    blast = "safe"

    def inputs(self, ctx: Context) -> dict[str, Any] | None:
        if not ctx.cfg.sync.enabled:
            return None
        return syncloop.settings(ctx.cfg)

    def apply(self, ctx: Context) -> Outcome:
        try:
            wanted = syncloop.settings(ctx.cfg)
            pid = syncloop_control.running_pid(ctx.pod)
            why = None
            if pid:
                current = (syncloop_control.status(ctx.pod) or {}).get("settings")
                stale = [r.id for r in ctx.failing(self.id) if r.id == "sync.running"]
                if current == wanted and not stale:
                    return Outcome.unchanged(f"the sync loop runs (pid {pid}) with the configured settings")
                why = "its last pass is too old" if stale else "its settings differ from [sync]"
                syncloop_control.stop(ctx.pod, act=ctx)
            started = syncloop_control.start(ctx.pod, act=ctx)
        except syncloop.SyncLoopError as exc:
            return Outcome.failed(str(exc))
        if why:
            return Outcome.changed(f"restarted the sync loop ({why}): pid {pid} -> {started.pid}")
        return Outcome.changed(started.message)
