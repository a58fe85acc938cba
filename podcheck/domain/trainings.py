"""Running LoRA trainings (kohya sd-scripts, FluxGym): their processes, output folder, script and
launcher, `--save_state`, the last thing they wrote, and the GPUs they use.

A training is a process running `flux_train_network.py`, `train_network.py` (any `*_train_network.py`),
`sdxl_train*.py`, or any script under `accelerate launch`; the accelerate parent, its child and
data-loader workers with the same `--output_dir` are one training.

>>> script_of(["python", "-m", "accelerate.commands.launch", "--mixed_precision", "bf16", "sd-scripts/train_db.py"])
'sd-scripts/train_db.py'
>>> option(["x.py", "--output_dir=/w/out", "--save_state"], "--output_dir")
'/w/out'
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from typing import Any

from podcheck.host import procs

SCRIPT = re.compile(r"(?:^|/)(?:\w+_)?train_network\.py$|(?:^|/)sdxl_train[^/]*\.py$")
STATE_DIR = re.compile(r"-state$")


@dataclass
class Training:
    script: str
    output_dir: str | None
    cwd: str | None
    pids: list[int] = field(default_factory=list)
    elapsed: float = 0.0           # seconds since its oldest process started
    save_state: bool = False       # --save_state in the running argv
    launcher: str | None = None    # the shell script that started it (FluxGym's train.sh)
    logging_dir: str | None = None

    @property
    def label(self) -> str:
        return self.output_dir or f"{self.script} in {self.cwd}"


def script_of(argv: list[str]) -> str | None:
    """The training script in an argv: a kohya script, or the script `accelerate launch` runs."""
    for arg in argv:
        if SCRIPT.search(arg):
            return arg
    for i, arg in enumerate(argv):
        if arg == "accelerate.commands.launch" or (
                arg == "launch" and i > 0 and posixpath.basename(argv[i - 1]) == "accelerate"):
            return next((a for a in argv[i + 1:] if a.endswith(".py")), None)
    return None


def option(argv: list[str], name: str) -> str | None:
    """The value of `--name VALUE` or `--name=VALUE` in argv."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def _inside(path: str | None, roots: list[str]) -> bool:
    if not path:
        return False
    path = posixpath.normpath(path)
    return any(path == posixpath.normpath(r) or path.startswith(posixpath.normpath(r).rstrip("/") + "/")
               for r in roots)


def find(pod: Any, roots: list[str]) -> list[Training]:
    """Trainings running on the host whose output folder (or working directory) lies under `roots`."""
    listing = procs.listing(pod)
    found: dict[str, Training] = {}
    for p in listing:
        if ".py" not in p.args or "train" not in p.args:
            continue
        argv = procs.argv(pod, p.pid)
        script = script_of(argv) if argv else None
        if not script:
            continue
        cwd = procs.cwd(pod, p.pid)
        out = option(argv, "--output_dir")
        if out and cwd and not out.startswith("/"):
            out = posixpath.normpath(posixpath.join(cwd, out))
        if not _inside(out or cwd, roots):
            continue
        key = out or f"{cwd}\0{script}"
        t = found.setdefault(key, Training(script=script, output_dir=out, cwd=cwd))
        t.pids.append(p.pid)
        t.elapsed = max(t.elapsed, p.elapsed)
        t.save_state = t.save_state or "--save_state" in argv
        logging_dir = option(argv, "--logging_dir")
        if logging_dir and cwd and not logging_dir.startswith("/"):
            logging_dir = posixpath.normpath(posixpath.join(cwd, logging_dir))
        t.logging_dir = t.logging_dir or logging_dir
        if t.launcher is None:
            t.launcher = _launcher(pod, listing, p.pid, cwd)
    return list(found.values())


def _launcher(pod: Any, listing: list[procs.Proc], pid: int, cwd: str | None) -> str | None:
    """The .sh script an ancestor shell runs (FluxGym: `bash <output>/train.sh`)."""
    for parent in procs.ancestors(listing, pid):
        if ".sh" not in parent.args:
            continue
        argv = procs.argv(pod, parent.pid) or []
        for arg in argv[1:]:
            if arg.endswith(".sh"):
                base = procs.cwd(pod, parent.pid) or cwd or "/"
                return arg if arg.startswith("/") else posixpath.normpath(posixpath.join(base, arg))
    return None


def script_has_save_state(pod: Any, training: Training) -> tuple[str | None, bool | None]:
    """(the launcher script, whether it passes --save_state outside comments); (None, None) when unknown."""
    path = training.launcher
    if path is None and training.output_dir and pod.exists(f"{training.output_dir}/train.sh"):
        path = f"{training.output_dir}/train.sh"
    text = pod.read_text(path) if path else None
    if text is None:
        return path, None
    code = "\n".join(line.split("#", 1)[0] for line in text.splitlines())
    return path, re.search(r"--save_state(\s|=|$)", code) is not None


@dataclass
class Activity:
    newest: float | None          # mtime of the newest file or folder written
    newest_path: str | None
    latest_state: str | None      # the newest `*-state` folder (kohya --save_state)


def activity(pod: Any, training: Training) -> Activity:
    """What the training last wrote into its output (and logging) folder."""
    where = [d for d in (training.output_dir, training.logging_dir) if d]
    if not where:
        return Activity(None, None, None)
    ran = pod.run("find", *where, "-maxdepth", "3", "-printf", "%T@\\t%y\\t%p\\n")
    newest, newest_path, state, state_time = None, None, None, -1.0
    for line in ran.stdout.splitlines():
        parts = line.split("\t", 2)
        if len(parts) != 3:
            continue
        try:
            t = float(parts[0])
        except ValueError:
            continue
        if parts[2] in where:
            continue
        if newest is None or t > newest:
            newest, newest_path = t, parts[2]
        if parts[1] == "d" and STATE_DIR.search(parts[2]) and t > state_time:
            state, state_time = parts[2], t
    return Activity(newest, newest_path, state)


def gpus_of(pod: Any, training: Training, gpus: list[dict[str, Any]]) -> list[int]:
    """The GPU indices a training uses: NVML's process list by pid (right outside containers), else
    CUDA_VISIBLE_DEVICES of its process (indices or UUIDs), else GPU 0 (torch's default device)."""
    if not gpus:
        return []
    by_pid = sorted({g["index"] for g in gpus for p in g.get("processes") or [] if p.get("pid") in training.pids})
    if by_pid:
        return by_pid
    visible = procs.environ(pod, training.pids[0]).get("CUDA_VISIBLE_DEVICES") if training.pids else None
    if visible:
        picked = []
        for item in visible.split(","):
            item = item.strip()
            for g in gpus:
                if item == str(g.get("index")) or (item and item == g.get("uuid")):
                    picked.append(g["index"])
        if picked:
            return sorted(set(picked))
    return [gpus[0]["index"]]
