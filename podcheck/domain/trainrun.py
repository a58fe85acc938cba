"""A training run as processes: the script-launched run (`bash .../train.sh`) that any of its pids
belongs to, the settings its running trainer was given (expanded argv and cwd), and stopping its
process group or tree (TERM, KILL after a grace period, verified gone). training.resume uses both.
"""
from __future__ import annotations

import posixpath
import time
from dataclasses import dataclass

from podcheck.domain import trainings, trainscript
from podcheck.host import procs as procs_mod
from podcheck.host import shell
from podcheck.host.actor import Actor
from podcheck.host.procs import Proc


def processes(pod) -> dict[int, Proc]:
    return procs_mod.table(pod)


def cmdline(pod, pid: int) -> list[str]:
    text = pod.read_text(f"/proc/{pid}/cmdline") or ""
    return [a for a in text.split("\0") if a] if text else []


descendants = procs_mod.descendants
alive = procs_mod.same


# --- the run ----------------------------------------------------------------------------------------

@dataclass
class Run:
    pid: int          # the launcher: `bash train.sh`
    script: str       # absolute path of the launch script
    cwd: str          # its working directory (FluxGym: the fluxgym folder)
    text: str = ""    # the script's text
    live: trainings.Options | None = None  # the settings of its running trainer (expanded argv and cwd)

    @property
    def folder(self) -> str:
        return posixpath.dirname(self.script)

    @property
    def output_dir(self) -> str | None:
        """Where the run writes its states: the running trainer's --output_dir (the shell expanded it,
        relative to the trainer's own cwd); without one running, the script's literal value. None when
        only the script is known and its value needs the shell (`"$OUT"`, or a `cd` before it)."""
        if self.live and self.live.output_dir:
            return self.live.output_dir
        value = trainscript.flag_value(self.text, "--output_dir")
        if value is None:
            return self.folder
        if any(c in value for c in "$`") or (not value.startswith("/") and trainscript.changes_directory(self.text)):
            return None
        return posixpath.normpath(posixpath.join(self.cwd, value))

    @property
    def output_name(self) -> str | None:
        if self.live and (self.live.output_name or self.live.output_dir):
            return self.live.output_name
        value = trainscript.flag_value(self.text, "--output_name")
        return None if value and any(c in value for c in "$`") else value

    @property
    def save_state(self) -> bool:
        return bool(self.live and self.live.save_state) or trainscript.has_flag(self.text, "--save_state")


def trainer_options(pod, launcher: int, procs: dict[int, Proc]) -> trainings.Options | None:
    """The settings of the training process under `launcher` (accelerate's child or itself), read from
    its /proc argv and cwd: what the shell really passed, never the script's variables made up."""
    for p in descendants(procs, launcher):
        argv = cmdline(pod, p.pid)
        if p.pid != launcher and argv and trainings.script_of(argv):
            cwd = (pod.run("readlink", f"/proc/{p.pid}/cwd").stdout.strip() or "").removesuffix(" (deleted)")
            return trainings.options(pod, argv, cwd or None)
    return None


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
            return Run(pid, posixpath.normpath(posixpath.join(cwd, script)), cwd,
                       live=trainer_options(pod, pid, procs))
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

def stop(pod, root: int, grace: float, act=None) -> tuple[bool, str]:
    """Stop the run under `root`: TERM, KILL after `grace` s, then verify; (all gone, what happened).
    A dry run plans the KILL for the processes that ignore SIGTERM (their /proc status says so)."""
    act = act or Actor(pod)
    procs = processes(pod)
    members = descendants(procs, root)
    member_pids = {p.pid for p in members}
    own = procs_mod.own_groups(pod)
    groups = {p.pgid for p in members if p.pgid in member_pids and p.pgid not in own and p.pgid > 1}
    watched = members + [p for p in procs.values() if p.pgid in groups and p.pid not in member_pids]
    singles = [p.pid for p in members if p.pgid not in groups and p.pid not in own]
    targets = [f"-{g}" for g in sorted(groups)] + [str(p) for p in singles]
    if not targets:
        return True, "nothing left to stop"
    _signal(act, "TERM", targets)
    left = _ignoring_term(pod, watched) if act.dry_run else _wait_gone(pod, watched, grace)
    killed = len(left)
    if left:
        _signal(act, "KILL", targets + [str(p.pid) for p in left])
        left = [] if act.dry_run else _wait_gone(pod, left, 5.0)
    what = f"{len(watched)} process{'es' if len(watched) != 1 else ''} (pids {', '.join(str(p.pid) for p in watched[:8])}"
    what += ", ...)" if len(watched) > 8 else ")"
    how = "SIGTERM" + (f", SIGKILL for {killed} still there after {grace:g} s" if killed else "")
    if left:
        return False, f"could not stop {', '.join(str(p.pid) for p in left)} of the run (sent {how})"
    return True, f"stopped {what} with {how}"


def _signal(act, name: str, targets: list[str]) -> None:
    shell.send(act.run, name, targets)


def _ignoring_term(pod, watched: list[Proc]) -> list[Proc]:
    """Those of `watched` whose signal mask ignores SIGTERM (SigIgn in /proc/<pid>/status)."""
    ran = pod.run("sh", "-c", 'for p; do printf "%s " "$p"; grep -s "^SigIgn:" "/proc/$p/status" || echo; done; true',
                  "sh", *[str(p.pid) for p in watched])
    ignored = set()
    for line in ran.stdout.splitlines():
        pid, _, rest = line.partition(" ")
        mask = rest.partition(":")[2].strip()
        if mask and pid.isdigit() and int(mask, 16) & (1 << 14):  # bit 15-1: SIGTERM
            ignored.add(int(pid))
    return [p for p in watched if p.pid in ignored]


def _wait_gone(pod, watched: list[Proc], limit: float) -> list[Proc]:
    deadline = time.monotonic() + limit
    while True:
        procs = processes(pod)
        left = [p for p in watched if alive(procs, p)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)
