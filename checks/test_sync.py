"""sync: outputs reach Google Drive (rclone), per user, continuously, without quota or duplicate errors."""
import re

import pytest

from podcheck import syncloop
from podcheck.domain import rclone, syncjobs, syncloop_control
from podcheck.domain.users import users
from podcheck.host import procs


def _sync(pod):
    return pod.config.sync  # every sync check is gated on it: when="sync.enabled"


def _ago(seconds):
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def _pattern(pod):
    """[sync] process_pattern compiled (None when empty)."""
    pattern = pod.config.sync.process_pattern
    if not pattern:
        return None
    try:
        return re.compile(pattern)
    except re.error as exc:
        pytest.fail(f"[sync] process_pattern {pattern!r} is not a regular expression ({exc})", pytrace=False)


@pytest.mark.podcheck(id="sync.config", repair="sync.config", when="sync.enabled")
def test_config(pod, say):
    """The rclone config has the sync remote; a Drive service account writes to a Shared Drive."""
    s = _sync(pod)
    path = s.rclone_config
    try:
        remotes = rclone.dump(pod, path)
    except rclone.RcloneError as exc:
        pytest.fail(str(exc), pytrace=False)
    problems = []
    mode = rclone.file_mode(pod, path)
    if mode is not None and rclone.readable_by_others(mode):
        problems.append(f"{path} is readable by group/others (mode {mode:03o}): chmod 600 {path}")
    if s.remote not in remotes:
        known = ", ".join(sorted(remotes)) or "none"
        problems.append(f"remote {s.remote!r} ([sync] remote) is not in {path} (remotes: {known})")
    chain = rclone.chain(remotes, s.remote)
    for name, section in chain:
        if section.get("type") == "drive":
            problems += rclone.drive_problems(pod, name, section, path)
    assert not problems, f"rclone config {path}: " + "; ".join(problems)
    say(f"{path}: remote " + " -> ".join(f"{n} ({sec.get('type')})" for n, sec in chain))


@pytest.mark.podcheck(id="sync.running", repair="sync.start", profiles=("runtime",), when="sync.enabled",
                      needs=("pod.workspace", "sync.config"))
def test_running(pod, say):
    """A sync loop runs and its last successful pass is younger than max_age_minutes.

    The loop is podcheck's managed loop (pidfile and status in state_dir), or a shell loop or script
    that runs rclone, or a process matching [sync] process_pattern (alive is all that can be told of those)."""
    s = _sync(pod)
    status = syncloop_control.status(pod) or {}
    pid = syncloop_control.running_pid(pod)
    now = procs.now(pod)
    max_age = s.max_age_minutes * 60
    limit = f"[sync] max_age_minutes = {s.max_age_minutes:g}"
    failing = _failing(status)
    refused = [f"{user} {folder}: {result['error']}" for user, folders in (status.get("users") or {}).items()
               if isinstance(folders, dict) for folder, result in folders.items()
               if isinstance(result, dict) and result.get("refused")]
    if pid and refused:
        pytest.fail(f"the sync loop (pid {pid}) protects the remote: " + "; ".join(refused[:4]), pytrace=False)
    if pid:
        last = status.get("last_success")
        if last is None:
            running = now - float(status.get("started") or now)
            assert running <= max_age, (
                f"the sync loop (pid {pid}) has run for {_ago(running)} without one successful pass ({limit})"
                f"{failing}")
            say(f"sync loop pid {pid} started {_ago(running)} ago; its first pass is not done yet")
            return
        assert now - last <= max_age, (
            f"the sync loop (pid {pid}) is stale: its last successful pass was {_ago(now - last)} ago ({limit})"
            f"{failing}; restart it")
        say(f"sync loop pid {pid}: last successful pass {_ago(now - last)} ago")
        return
    pattern = _pattern(pod)
    ours = (pod.config.pod.workspace.rstrip("/") + "/", pod.config.pod.comfyui_dir.rstrip("/") + "/")
    loops = [j for j in syncjobs.find(pod, pattern=pattern) if j.loop and j.concerns(ours)]
    if loops:
        how = "matches [sync] process_pattern" if pattern else "runs rclone (found by default)"
        say(f"sync loop {loops[0].what} {how}; its pass age is unknown")
        return
    last = status.get("last_success")
    history = f"; its last successful pass was {_ago(now - last)} ago" if last else "; it never finished a pass"
    if status.get("pid") and not status.get("stopped"):
        why = f"the sync loop (pid {status['pid']}) is dead{history}{failing}"
    elif status.get("stopped"):
        why = f"the sync loop was stopped {_ago(now - status['stopped'])} ago{history}"
    else:
        pattern = "no shell loop or script runs rclone" + (
            f", no process matches [sync] process_pattern = {s.process_pattern!r}" if s.process_pattern else "")
        why = f"no sync loop runs (none started by podcheck in {pod.config.pod.state_dir}; {pattern})"
    pytest.fail(f"{why}: new outputs are not copied to {s.remote}:{s.remote_root}",
                pytrace=False)


def _failing(status):
    bad = []
    for user, folders in (status.get("users") or {}).items():
        for folder, result in folders.items() if isinstance(folders, dict) else ():
            if isinstance(result, dict) and result.get("rc") not in (0, None):
                bad.append(f"{user} {folder}: {rclone.redact_line(result.get('error') or 'rc ' + str(result['rc']))[:200]}")
    return ("; failing: " + "; ".join(bad[:4])) if bad else ""


@pytest.mark.podcheck(id="sync.per_user", repair="sync.start", profiles=("runtime",), when="sync.enabled",
                      needs=("pod.workspace", "sync.config"))
def test_per_user(pod, say):
    """Each sync maps one user's folder to that user's remote folder, never all of output/.

    {workspace}/<folder>/<user> must go to <remote>:<remote_root>/<folder>/<user>; judged from running
    rclone command lines, the managed loop's settings, and the shell loops and scripts that run rclone
    (found by default; process_pattern adds more)."""
    s = _sync(pod)
    c = pod.config.pod
    mappings = []  # (where it comes from, src, dst)
    for job in syncjobs.find(pod, pattern=_pattern(pod)):
        mappings += [(job.what, t.src, t.dst) for t in job.transfers]
    problems = []
    if syncloop_control.running_pid(pod):
        loop = (syncloop_control.status(pod) or {}).get("settings") or {}
        started_for = (loop.get("remote"), loop.get("remote_root"))
        if loop and started_for != (s.remote, s.remote_root.strip("/")):
            problems.append(f"the sync loop writes to {started_for[0]}:{started_for[1]}, but [sync] now says "
                            f"{s.remote}:{s.remote_root}: restart it")
        elif loop:
            names = loop.get("users") or users(pod)
            mappings += [("podcheck sync loop", src, dst) for src, dst in syncloop.plan(loop, names)]
    ours = (c.workspace.rstrip("/") + "/", c.comfyui_dir.rstrip("/") + "/")
    mappings = [m for m in mappings if (m[1].rstrip("/") + "/").startswith(ours)]  # this pod's folders only
    if not mappings and not problems:
        pytest.skip("no sync to judge: no podcheck sync loop, no rclone transfer running, no shell loop or "
                    "script running rclone with literal paths")
    for where, src, dst in mappings:
        why = syncloop.judge_mapping(c.workspace, c.comfyui_dir, s.remote, s.remote_root, src, dst)
        if why:
            problems.append(f"{where} {why}")
    assert not problems, "; ".join(dict.fromkeys(problems))
    say(f"{len(mappings)} sync mapping(s), each one user's folder")


@pytest.mark.podcheck(id="sync.errors", when="sync.enabled",
                      remedy="the message names each error's fix (rclone dedupe, a Shared Drive, new credentials)")
def test_errors(pod, say):
    """The recent sync log has no quota errors, no 'Duplicate object found', no auth or network failures
    (told apart: a refused connection while fetching a token is the network, not the token)."""
    s = _sync(pod)
    ran = pod.run("tail", "-c", "262144", s.log)
    if not ran.ok:
        pytest.skip(f"no sync log at {s.log}")
    window = s.errors_window_minutes * 60
    found = rclone.log_problems(ran.stdout, procs.now(pod) - window)
    if not found:
        say(f"{s.log}: no quota, duplicate, auth or network errors in the last {_ago(window)}")
        return
    parts = []
    advice = {
        "quota": "the service account has no storage of its own: sync to a Shared Drive (team_drive, see sync.config)",
        "auth": "rclone cannot log in: check the token or service-account key (see sync.config)",
        "network": "rclone cannot reach Google: the pod's network, DNS or proxy fails, not the credentials",
    }
    for kind, hits in found.items():
        example = rclone.redact_line(rclone.shorten(hits[-1][0]))[-300:]
        if kind == "duplicates":
            where = sorted({d for _, d in hits if d}) or [f"{s.remote}:{s.remote_root}"]
            fix = "; ".join(f"rclone dedupe --dedupe-mode newest {d} --config {s.rclone_config}" for d in where[:4])
            parts.append(f"{len(hits)} x 'Duplicate object found' (Drive holds two files of one name; stop the sync "
                         f"loop, then run: {fix}), e.g. {example!r}")
        else:
            parts.append(f"{len(hits)} x {kind} error ({advice[kind]}), e.g. {example!r}")
    pytest.fail(f"sync log {s.log}, last {_ago(window)}: " + "; ".join(parts), pytrace=False)
