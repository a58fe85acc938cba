"""training.resume: stop a stuck kohya/FluxGym training and start it again from its newest state.

Given any pid of a stuck run, `resume(pod, pid)`:
1. finds the run's launch script (`bash .../train.sh`, an ancestor of the pid) and its launch command;
2. leaves `.bat` scripts and runs without `--save_state` as they are (reported, not touched);
3. stops the run: its process group when the launcher leads one, otherwise its process tree (FluxGym
   starts train.sh inside its own UI's group, which must survive), TERM, then KILL after a grace
   period, and verifies every process is gone;
4. picks the newest valid state checkpoint (`<name>-<epoch:06d>-state`, `<name>-step<step:08d>-state`,
   `<name>-state`, each with a train_state.json) and writes `--resume <absolute path>` into the
   script after a timestamped backup; no checkpoint: the script runs again from the beginning;
5. relaunches the script detached (own session), with the stuck run's working directory and
   environment, output appended to podcheck-resume.log beside the script, and records the new pid.
Everything goes through `pod.run`, so it works on local and remote pods alike.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from podcheck.domain import trainings, trainscript
from podcheck.domain.samples import Samples, below_for
from podcheck.facts import read_nvml
from podcheck.host import procs
from podcheck.host.state import State

LOG_NAME = "podcheck-resume.log"
ENV_NAME = ".podcheck-resume.env"
STATE_NAME = "training-resume"

#: kohya sd-scripts' state folder names (library/train_util.py): epoch, step, end of training.
STATE_DIR = re.compile(r"^(?P<name>.+?)-(?:(?P<epoch>\d{6})|step(?P<step>\d{8}))?-?state$")


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    pgid: int
    state: str
    start: int  # clock ticks after boot: tells a process from a later one with the same pid


@dataclass
class Checkpoint:
    path: str
    step: int  # train_state.json's current_step (or the number in the name)
    epoch: int
    mtime: float


@dataclass
class Outcome:
    """What resume() did; `status` is a RepairResult status (changed | unchanged | failed | skipped)."""

    status: str
    message: str
    pid: int | None = None
    checkpoint: str | None = None
    backup: str | None = None
    log: str | None = None
    commands: list[str] = field(default_factory=list)


# --- processes, read from /proc through the pod (no procps needed) ----------------------------------

def processes(pod) -> dict[int, Proc]:
    ran = pod.run("sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null; true")
    procs = {}
    for line in ran.stdout.splitlines():
        head, _, rest = line.rpartition(")")
        fields = rest.split()
        if not head or len(fields) < 20:
            continue
        try:
            pid = int(head.split(" (", 1)[0])
            procs[pid] = Proc(pid, int(fields[1]), int(fields[2]), fields[0], int(fields[19]))
        except ValueError:
            continue
    return procs


def cmdline(pod, pid: int) -> list[str]:
    text = pod.read_text(f"/proc/{pid}/cmdline") or ""
    return [a for a in text.split("\0") if a] if text else []


def descendants(procs: dict[int, Proc], root: int) -> list[Proc]:
    """root and everything below it."""
    children: dict[int, list[int]] = {}
    for p in procs.values():
        children.setdefault(p.ppid, []).append(p.pid)
    out, stack = [], [root]
    while stack:
        pid = stack.pop()
        if pid in procs:
            out.append(procs[pid])
            stack.extend(children.get(pid, []))
    return out


def alive(procs: dict[int, Proc], known: Proc) -> bool:
    now = procs.get(known.pid)
    return now is not None and now.start == known.start and now.state not in ("Z", "X")


# --- the run ----------------------------------------------------------------------------------------

@dataclass
class Run:
    pid: int          # the launcher: `bash train.sh`
    script: str       # absolute path of the launch script
    cwd: str          # its working directory (FluxGym: the fluxgym folder)
    text: str = ""    # the script's text

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.script)

    @property
    def output_dir(self) -> str:
        value = trainscript.flag_value(self.text, "--output_dir")
        return posixpath.normpath(posixpath.join(self.cwd, value)) if value else self.folder

    @property
    def output_name(self) -> str | None:
        return trainscript.flag_value(self.text, "--output_name")


def find_run(pod, pid: int, procs: dict[int, Proc] | None = None) -> Run | None:
    """The run that `pid` belongs to: the nearest ancestor (or itself) that runs a script file."""
    procs = procs if procs is not None else processes(pod)
    seen = set()
    while pid in procs and pid not in seen and pid > 1:
        seen.add(pid)
        argv = cmdline(pod, pid)
        script = _script_of(argv)
        if script:
            cwd = (pod.run("readlink", f"/proc/{pid}/cwd").stdout.strip() or "/").removesuffix(" (deleted)")
            return Run(pid, posixpath.normpath(posixpath.join(cwd, script)), cwd)
        pid = procs[pid].ppid
    return None


def _script_of(argv: list[str]) -> str | None:
    """`bash "/x/train.sh"` -> /x/train.sh (also sh/dash, and a .bat handed to any interpreter)."""
    if not argv:
        return None
    shell = posixpath.basename(argv[0])
    if shell in ("bash", "sh", "dash", "zsh") or shell.endswith(".sh") or shell.endswith(".bat"):
        if shell.endswith((".sh", ".bat")):
            return argv[0]
        for arg in argv[1:]:
            if not arg.startswith("-"):
                return arg if arg.endswith((".sh", ".bat")) else None
    return next((a for a in argv[1:] if a.endswith(".bat")), None)


# --- stopping ---------------------------------------------------------------------------------------

def stop(pod, root: int, grace: float) -> tuple[bool, str]:
    """Stop the run under `root`: TERM, KILL after `grace` s, then verify; (all gone, what happened)."""
    procs = processes(pod)
    members = descendants(procs, root)
    member_pids = {p.pid for p in members}
    own = {os.getpid(), os.getpgrp()} if pod.is_local else set()
    groups = {p.pgid for p in members if p.pgid in member_pids and p.pgid not in own and p.pgid > 1}
    watched = members + [p for p in procs.values() if p.pgid in groups and p.pid not in member_pids]
    singles = [p.pid for p in members if p.pgid not in groups and p.pid not in own]
    targets = [f"-{g}" for g in sorted(groups)] + [str(p) for p in singles]
    if not targets:
        return True, "nothing left to stop"
    _signal(pod, "TERM", targets)
    left = _wait_gone(pod, watched, grace)
    killed = len(left)
    if left:
        _signal(pod, "KILL", targets + [str(p.pid) for p in left])
        left = _wait_gone(pod, left, 5.0)
    what = f"{len(watched)} process{'es' if len(watched) != 1 else ''} (pids {', '.join(str(p.pid) for p in watched[:8])}"
    what += ", ...)" if len(watched) > 8 else ")"
    how = "SIGTERM" + (f", SIGKILL for {killed} still there after {grace:g} s" if killed else "")
    if left:
        return False, f"could not stop {', '.join(str(p.pid) for p in left)} of the run (sent {how})"
    return True, f"stopped {what} with {how}"


def _signal(pod, name: str, targets: list[str]) -> None:
    pod.run("sh", "-c", 'kill -s "$0" -- "$@" 2>/dev/null; true', name, *targets)


def _wait_gone(pod, watched: list[Proc], limit: float) -> list[Proc]:
    deadline = time.monotonic() + limit
    while True:
        procs = processes(pod)
        left = [p for p in watched if alive(procs, p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


# --- checkpoints ------------------------------------------------------------------------------------

_LIST_STATES = r'''
for d in "$1"/*-state; do
  [ -f "$d/train_state.json" ] || continue
  printf '%s\0' "$d"; find "$d" -maxdepth 0 -printf '%T@\0'; head -c 4096 "$d/train_state.json"; printf '\0'
done; true
'''


def checkpoints(pod, output_dir: str, output_name: str | None = None) -> list[Checkpoint]:
    """Valid state checkpoints in output_dir, oldest first: by step (train_state.json, else the name's
    number), then epoch, then mtime. A folder without a readable train_state.json is no checkpoint."""
    names = {output_name} if output_name else {"epoch", "at", "last"}  # kohya's defaults without --output_name
    fields = pod.run("sh", "-c", _LIST_STATES, "sh", output_dir).stdout.split("\0")
    found = []
    for path, mtime, body in zip(fields[0::3], fields[1::3], fields[2::3]):
        match = STATE_DIR.match(posixpath.basename(path))
        if not match or match["name"] not in names:
            continue
        try:
            data = json.loads(body)
            when = float(mtime)
        except ValueError:
            continue
        if not isinstance(data, dict):
            continue
        number = int(match["step"] or match["epoch"] or 0)
        final = not (match["step"] or match["epoch"])
        step = _int(data.get("current_step"), number if match["step"] else -1)
        epoch = _int(data.get("current_epoch"), number if match["epoch"] else -1)
        found.append((step, epoch, final, when, Checkpoint(path, step, epoch, when)))
    found.sort(key=lambda t: t[:4])
    return [t[-1] for t in found]


def _int(value, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


# --- files on the pod -------------------------------------------------------------------------------

_BACKUP = 'b="$1.bak-$2"; i=0; while [ -e "$b" ]; do i=$((i+1)); b="$1.bak-$2-$i"; done; cp -p -- "$1" "$b" && printf %s "$b"'
_WRITE = 't="$2.podcheck.$$.tmp"; printf %s "$1" > "$t" && chmod --reference="$2" "$t" && sync "$t" && mv -f "$t" "$2"'


def backup(pod, path: str) -> str:
    """Copy path to path.bak-<UTC time>, never over an earlier backup; the backup's path."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    ran = pod.run("sh", "-c", _BACKUP, "sh", path, stamp)
    if not ran.ok or not ran.stdout:
        raise OSError(f"cannot back up {path}: {ran.why()}")
    return ran.stdout


def write_text(pod, path: str, text: str) -> None:
    """Replace path's content in one step (temp file, fsync, rename), keeping its mode."""
    ran = pod.run("sh", "-c", _WRITE, "sh", text, path)
    if not ran.ok:
        raise OSError(f"cannot write {path}: {ran.why()}")


# --- relaunching ------------------------------------------------------------------------------------

# $1 cwd, $2 script, $3 log, $4 header line, $5 env file ('' = inherit podcheck's environment).
_LAUNCH = r'''
cd "$1" || exit 97
printf '%s\n' "$4" >> "$3" || exit 98
if [ -n "$5" ]; then
  setsid env -i bash -c "$0" podcheck-resume "$2" "$5" >> "$3" 2>&1 < /dev/null &
else
  setsid bash "$2" >> "$3" 2>&1 < /dev/null &
fi
echo $!
'''
# Restores the stuck run's environment (NUL-separated, as in /proc/<pid>/environ), removes the copy,
# then becomes the script: the pid that _LAUNCH printed is the new run's launcher and group leader.
_WITH_ENV = r'''
while IFS= read -r -d '' kv; do export "$kv" 2>/dev/null; done < "$2"
rm -f -- "$2"
exec bash "$1"
'''


def save_environment(pod, pid: int, folder: str) -> str | None:
    """Copy the run's environment beside its script (mode 0600; no secret passes through argv)."""
    path = posixpath.join(folder, ENV_NAME)
    ran = pod.run("sh", "-c", 'umask 077; cat "/proc/$1/environ" > "$2"', "sh", str(pid), path)
    if ran.ok:
        return path
    pod.run("rm", "-f", "--", path)
    return None


def launch(pod, run: Run, header: str, env_file: str | None) -> int:
    """Start the script detached; the new launcher's pid."""
    log = posixpath.join(run.folder, LOG_NAME)
    ran = pod.run("sh", "-c", _LAUNCH, _WITH_ENV, run.cwd, run.script, log, header, env_file or "")
    if not ran.ok or not ran.stdout.strip().isdigit():
        if env_file:
            pod.run("rm", "-f", "--", env_file)
        raise OSError(f"cannot start {run.script}: {ran.why()}")
    return int(ran.stdout.strip())


def _tail(pod, path: str, lines: int = 5) -> str:
    ran = pod.run("tail", "-n", str(lines), "--", path)
    return " | ".join(ln.strip() for ln in ran.stdout.splitlines() if ln.strip())[-600:]


# --- which runs are stuck ---------------------------------------------------------------------------

def stuck(pod) -> list[tuple[int, str]]:
    """(a pid, why) for each running training that training.progress calls stuck, judged on what
    happened since that run started: a run relaunched a minute ago is not stuck because the GPU was
    idle for an hour before it (its model is still loading)."""

    cfg = pod.config.training
    found = trainings.find(pod, [pod.config.pod.workspace, *cfg.roots])
    if not found:
        return []
    now = procs.now(pod)
    nvml = read_nvml(pod) if pod.config.pod.gpu != "absent" else {}
    gpus = nvml.get("gpus") or [] if nvml.get("available") else []
    samples = Samples(pod)
    max_gap = max(30.0, cfg.stuck_seconds / 2)
    out = []
    for t in found:
        started = now - t.elapsed
        if t.elapsed < cfg.stuck_seconds or not t.pids:
            continue
        indices = trainings.gpus_of(pod, t, gpus)
        series = {i: samples.series(f"gpu.{i}.util", since=started) for i in indices}
        if indices and all(series.values()):
            idle = [below_for(series[i], cfg.gpu_util_threshold, now, max_gap) for i in indices]
            if all(v >= cfg.stuck_seconds for v in idle):
                out.append((t.pids[0], f"GPU {', '.join(map(str, indices))} below {cfg.gpu_util_threshold:g} % "
                                       f"for {min(idle):.0f} s"))
                continue
            if any(v == 0.0 for v in idle):
                continue  # busy
        act = trainings.activity(pod, t)
        quiet = now - max(act.newest or 0.0, started)
        if quiet >= cfg.stuck_seconds:
            out.append((t.pids[0], f"nothing new in {t.output_dir or t.cwd} for {quiet:.0f} s"))
    return out


# --- the repair -------------------------------------------------------------------------------------

def resume(pod, pid: int, grace: float | None = None, settle: float = 1.0) -> Outcome:
    """Stop the stuck run that `pid` belongs to and start it again from its newest state checkpoint."""
    grace = float(pod.config.training.kill_grace_seconds if grace is None else grace)
    procs = processes(pod)
    if pid not in procs:
        return Outcome("skipped", f"training pid {pid} is no longer running")
    run = find_run(pod, pid, procs)
    if run is None:
        return Outcome("skipped", f"training pid {pid} was not started from a script (train.sh): "
                                  "nothing podcheck can relaunch; restart it by hand")
    if run.script.endswith(".bat"):
        return Outcome("skipped", f"{run.script} is a Windows script: not touched; "
                                  "stop the run and start it again with --resume <state folder>")
    text = pod.read_text(run.script)
    if text is None:
        return Outcome("failed", f"cannot read {run.script}: the run was left as it is")
    run.text = text
    if trainscript.launch_command(text) is None:
        return Outcome("skipped", f"{run.script} has no command that runs a training script: not touched")
    if not trainscript.has_flag(text, "--save_state"):
        return Outcome("skipped", f"{run.script} lacks --save_state, so this run cannot be resumed: "
                                  "left as it is; add --save_state (FluxGym: Advanced options) and restart it")
    env_file = save_environment(pod, run.pid, run.folder)
    gone, stopped = stop(pod, run.pid, grace)
    if not gone:
        if env_file:
            pod.run("rm", "-f", "--", env_file)
        return Outcome("failed", f"{stopped}; not relaunched while it runs")

    states = checkpoints(pod, run.output_dir, run.output_name)
    newest = states[-1] if states else None
    new_text = trainscript.with_resume(text, newest.path if newest else None)
    saved = None
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    what = f"resuming from {newest.path}" if newest else "restarting from the beginning (no state checkpoint yet)"
    try:
        if new_text != text:
            saved = backup(pod, run.script)
            write_text(pod, run.script, new_text)
        new_pid = launch(pod, run, f"== {now} podcheck training.resume: {what} ==", env_file)
    except OSError as exc:  # the run is stopped: say plainly how to start it again
        if env_file:
            pod.run("rm", "-f", "--", env_file)
        return Outcome("failed", f"{stopped}; {exc}: start it again by hand (cd {run.cwd} && bash {run.script})",
                       checkpoint=newest.path if newest else None, backup=saved)
    log = posixpath.join(run.folder, LOG_NAME)

    time.sleep(settle)
    now_procs = processes(pod)
    if new_pid not in now_procs or now_procs[new_pid].state in ("Z", "X"):
        return Outcome("failed", f"{stopped}; relaunched {run.script} but it exited at once: {_tail(pod, log)}",
                       pid=None, checkpoint=newest.path if newest else None, backup=saved, log=log)
    _record(pod, run, new_pid, newest, saved, log)
    env_note = "" if env_file else " (its environment was not readable: started with podcheck's)"
    if newest:
        step = f" (step {newest.step})" if newest.step >= 0 else ""
        message = (f"{stopped}; resumed {run.script} from {posixpath.basename(newest.path)}{step} "
                   f"with --resume {newest.path}")
    else:
        message = (f"{stopped}; no state checkpoint in {run.output_dir} yet: "
                   f"relaunched {run.script} from the beginning")
    message += (f"; backup {saved}" if saved else "") + f"; new pid {new_pid}, log {log}{env_note}"
    return Outcome("changed", message, pid=new_pid, checkpoint=newest.path if newest else None,
                   backup=saved, log=log)


def repair(pod) -> tuple[str, str]:
    """training.resume: resume every stuck training; (changed | unchanged | failed | skipped, message)."""
    runs = stuck(pod)
    if not runs:
        return "unchanged", "no running training is stuck"
    outcomes = [(why, resume(pod, pid)) for pid, why in runs]
    statuses = {o.status for _, o in outcomes}
    status = "failed" if "failed" in statuses else "changed" if "changed" in statuses else "skipped"
    return status, "; ".join(f"{o.message} (stuck: {why})" for why, o in outcomes)


def _record(pod, run: Run, pid: int, newest: Checkpoint | None, saved: str | None, log: str) -> None:
    state = State(pod)
    data = state.read(STATE_NAME) or {}
    runs = data.setdefault("runs", {})
    runs[run.script] = {"pid": pid, "cwd": run.cwd, "log": log, "backup": saved,
                        "checkpoint": asdict(newest) if newest else None,
                        "resumed": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    state.write(STATE_NAME, data)
