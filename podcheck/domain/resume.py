"""training.resume: stop a stuck kohya/FluxGym training and start it again from its newest state.

Given any pid of a stuck run, `resume(pod, pid)`:
1. finds the run's launch script (`bash .../train.sh`, an ancestor of the pid) and its launch command;
2. leaves `.bat` scripts and runs without `--save_state` as they are (reported, not touched);
3. stops the run: its process group when the launcher leads one, otherwise its process tree (FluxGym
   starts train.sh inside its own UI's group, which must survive), TERM, then KILL after a grace
   period, and verifies every process is gone;
4. picks the newest complete state checkpoint (`<name>-<epoch:06d>-state`, `<name>-step<step:08d>-state`,
   `<name>-state`, each with a train_state.json and the files accelerate writes after it, see
   podcheck.domain.checkpoints) under the output folder the running trainer was given (its expanded
   argv and cwd) and writes `--resume <absolute path>` into the script after a timestamped backup;
   no checkpoint: the script runs again from the beginning;
5. relaunches the script detached (own session), with the stuck run's working directory and
   environment, output appended to podcheck-resume.log beside the script, and records the new pid.
Finding and stopping the run is podcheck.domain.trainrun's; which state folders are complete,
podcheck.domain.checkpoints'; this module backs the script up, rewrites it and relaunches it.
Everything goes through `pod.run`, so it works on local and remote pods alike; every change goes
through an actor (podcheck.host.actor: the repair's recorded runner, which in a dry run records the
change and does not make it).
"""
from __future__ import annotations

import posixpath
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone

from podcheck.domain import trainings, trainscript
from podcheck.domain.checkpoints import Checkpoint, checkpoints
from podcheck.domain.samples import Samples, below_for
from podcheck.domain.trainrun import Run, cmdline, descendants, find_run, processes, stop
from podcheck.facts import read_nvml
from podcheck.host import procs as procs_mod
from podcheck.host import shell
from podcheck.host.actor import Actor
from podcheck.host.procs import Proc
from podcheck.host.state import State

LOG_NAME = "podcheck-resume.log"
ENV_NAME = ".podcheck-resume.env"
STATE_NAME = "training-resume"


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


# --- files on the pod -------------------------------------------------------------------------------

_BACKUP = 'b="$1.bak-$2"; i=0; while [ -e "$b" ]; do i=$((i+1)); b="$1.bak-$2-$i"; done; cp -p -- "$1" "$b" && printf %s "$b"'


def backup(pod, path: str, act=None) -> str:
    """Copy path to path.bak-<UTC time>, never over an earlier backup; the backup's path."""
    act = act or Actor(pod)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    ran = act.run("sh", "-c", _BACKUP, "sh", path, stamp)
    if act.dry_run:
        return f"{path}.bak-{stamp}"
    if not ran.ok or not ran.stdout:
        raise OSError(f"cannot back up {path}: {ran.why()}")
    return ran.stdout


def write_text(pod, path: str, text: str, act=None) -> None:
    """Replace path's content in one step (temp file, fsync, rename), keeping its mode."""
    ran = shell.write((act or Actor(pod)).run, path, text, like=path)
    if not ran.ok:
        raise OSError(f"cannot write {path}: {ran.why()}")


# --- relaunching ------------------------------------------------------------------------------------

# Restores the stuck run's environment (NUL-separated, as in /proc/<pid>/environ), removes the copy,
# then becomes the script: the pid start_detached reports is the new run's launcher and group leader.
_WITH_ENV = r'''
while IFS= read -r -d '' kv; do export "$kv" 2>/dev/null; done < "$2"
rm -f -- "$2"
exec bash "$1"
'''


def save_environment(pod, pid: int, folder: str, act=None) -> str | None:
    """Copy the run's environment beside its script (mode 0600; no secret passes through argv)."""
    act = act or Actor(pod)
    path = posixpath.join(folder, ENV_NAME)
    ran = act.run("sh", "-c", 'umask 077; cat "/proc/$1/environ" > "$2"', "sh", str(pid), path)
    if ran.ok:
        return path
    act.run("rm", "-f", "--", path)
    return None


def launch(pod, run: Run, header: str, env_file: str | None, act=None) -> int:
    """Start the script detached; the new launcher's pid (0 in a dry run: nothing started)."""
    act = act or Actor(pod)
    log = posixpath.join(run.folder, LOG_NAME)
    argv = ["env", "-i", "bash", "-c", _WITH_ENV, "podcheck-resume", run.script, env_file] if env_file \
        else ["bash", run.script]
    pid, ran = shell.start_detached(act.run, argv, log, run.cwd, header, dry_run=act.dry_run)
    if act.dry_run:
        return 0
    if pid is None:
        if env_file:
            act.run("rm", "-f", "--", env_file)
        raise OSError(f"cannot start {run.script}: {ran.why()}")
    return pid


def _tail(pod, path: str, lines: int = 5) -> str:
    return " | ".join(ln.strip() for ln in shell.tail(pod.run, path, lines) if ln.strip())[-600:]


# --- which runs are stuck ---------------------------------------------------------------------------

def stuck(pod) -> list[tuple[int, str]]:
    """(a pid, why) for each running training that training.progress calls stuck, judged on what
    happened since that run started: a run relaunched a minute ago is not stuck because the GPU was
    idle for an hour before it (its model is still loading)."""

    cfg = pod.config.training
    found = trainings.find(pod, [pod.config.pod.workspace, *cfg.roots])
    if not found:
        return []
    now = procs_mod.now(pod)
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

def resume(pod, pid: int, grace: float | None = None, settle: float = 1.0, act=None) -> Outcome:
    """Stop the stuck run that `pid` belongs to and start it again from its newest state checkpoint.
    `act` makes the changes (default: at once, unrecorded)."""
    act = act or Actor(pod)
    grace = float(pod.config.training.kill_grace_seconds if grace is None else grace)
    procs = processes(pod)
    if pid not in procs:
        return Outcome("skipped", f"training pid {pid} is no longer running")
    run = find_run(pod, pid, procs)
    if run is None:
        return Outcome("skipped", f"training pid {pid} was not started from a script (train.sh): "
                                  "nothing podcheck can relaunch; restart it by hand" + _by_hand(pod, pid, procs))
    if run.script.endswith(".bat"):
        return Outcome("skipped", f"{run.script} is a Windows script: not touched; "
                                  "stop the run and start it again with --resume <state folder>")
    text = pod.read_text(run.script)
    if text is None:
        return Outcome("failed", f"cannot read {run.script}: the run was left as it is")
    run.text = text
    if trainscript.launch_command(text) is None:
        return Outcome("skipped", f"{run.script} has no command that runs a training script: not touched")
    if not run.save_state:
        return Outcome("skipped", f"{run.script} lacks --save_state, so this run cannot be resumed: "
                                  "left as it is; add --save_state (FluxGym: Advanced options) and restart it")
    output_dir, output_name = run.output_dir, run.output_name
    if output_dir is None:
        return Outcome("skipped", f"cannot tell where {run.script} writes its states (its --output_dir needs the "
                                  "shell, and no trainer of the run is running to read it from): left as it is")
    env_file = save_environment(pod, run.pid, run.folder, act)
    gone, stopped = stop(pod, run.pid, grace, act)
    if not gone:
        if env_file:
            act.run("rm", "-f", "--", env_file)
        return Outcome("failed", f"{stopped}; not relaunched while it runs")

    rejected: list[str] = []
    states = checkpoints(pod, output_dir, output_name, rejected)
    newest = states[-1] if states else None
    new_text = trainscript.with_resume(text, newest.path if newest else None)
    saved = None
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    what = f"resuming from {newest.path}" if newest else "restarting from the beginning (no state checkpoint yet)"
    try:
        if new_text != text:
            saved = backup(pod, run.script, act)
            write_text(pod, run.script, new_text, act)
        new_pid = launch(pod, run, f"== {now} podcheck training.resume: {what} ==", env_file, act)
    except OSError as exc:  # the run is stopped: say plainly how to start it again
        if env_file:
            act.run("rm", "-f", "--", env_file)
        return Outcome("failed", f"{stopped}; {exc}: start it again by hand (cd {run.cwd} && bash {run.script})",
                       checkpoint=newest.path if newest else None, backup=saved)
    log = posixpath.join(run.folder, LOG_NAME)
    if act.dry_run:
        return Outcome("changed", f"would stop {run.script}'s run and relaunch it, {what}",
                       checkpoint=newest.path if newest else None, backup=saved, log=log)

    time.sleep(settle)
    now_procs = processes(pod)
    if new_pid not in now_procs or not now_procs[new_pid].running:
        return Outcome("failed", f"{stopped}; relaunched {run.script} but it exited at once: {_tail(pod, log)}",
                       pid=None, checkpoint=newest.path if newest else None, backup=saved, log=log)
    _record(pod, run, new_pid, newest, saved, log)
    env_note = "" if env_file else " (its environment was not readable: started with podcheck's)"
    if newest:
        step = f" (step {newest.step})" if newest.step >= 0 else ""
        message = (f"{stopped}; resumed {run.script} from {posixpath.basename(newest.path)}{step} "
                   f"with --resume {newest.path}")
    else:
        message = (f"{stopped}; no state checkpoint in {output_dir} yet: "
                   f"relaunched {run.script} from the beginning")
    if rejected:
        message += "; passed over " + ", ".join(rejected[:3]) + (f" and {len(rejected) - 3} more" if len(rejected) > 3 else "")
    message += (f"; backup {saved}" if saved else "") + f"; new pid {new_pid}, log {log}{env_note}"
    return Outcome("changed", message, pid=new_pid, checkpoint=newest.path if newest else None,
                   backup=saved, log=log)


def _by_hand(pod, pid: int, procs: dict[int, Proc]) -> str:
    """For a run podcheck cannot relaunch (kohya_ss GUI): the state to give its resume setting, if any."""
    opts = None
    for p in descendants(procs, pid):  # pid itself first
        argv = cmdline(pod, p.pid)
        if argv and trainings.script_of(argv):
            cwd = (pod.run("readlink", f"/proc/{p.pid}/cwd").stdout.strip() or "").removesuffix(" (deleted)")
            opts = trainings.options(pod, argv, cwd or None)
            break
    if opts is None or not opts.output_dir or not opts.save_state:
        return ""
    states = checkpoints(pod, opts.output_dir, opts.output_name)
    return f" with --resume {states[-1].path} (resume = in its config)" if states else ""


def repair(pod, act=None) -> tuple[str, str]:
    """training.resume: resume every stuck training; (changed | unchanged | failed | skipped, message).
    `act` makes the changes (the repair hands its recorded runner)."""
    runs = stuck(pod)
    if not runs:
        return "unchanged", "no running training is stuck"
    outcomes = [(why, resume(pod, pid, act=act)) for pid, why in runs]
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
