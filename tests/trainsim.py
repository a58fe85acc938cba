"""A FluxGym install for training tests, built from the real parts where they can run here:

- `train.sh` is written by FluxGym's own `gen_sh()` (shared/realparts/fluxgym-678add2.tar.gz, app.py);
- `env/bin/accelerate` is real accelerate's CLI (`accelerate launch` starts the trainer as a child);
- the trainer, `sd-scripts/flux_train_network.py`, is a stand-in for kohya's script (a FLUX model and
  sd-scripts cannot train here), but it saves and loads its state with real accelerate
  (`Accelerator.save_state` / `load_state`), names the folders as sd-scripts' train_util.py does
  (`<name>-000004-state`, `<name>-step00000500-state`, `<name>-state`; "epoch"/"at"/"last" without
  --output_name), writes `train_state.json` from a save-state pre-hook as train_network.py does
  (before accelerate writes the weights), reads `--config_file` TOML as train_util.py does (kohya_ss
  GUI runs), keeps a data-loader worker child that ignores SIGTERM, and after $TRAIN_STALL_AFTER steps
  stops progressing (sleeps, like a run stuck at 0 % GPU). $TRAIN_HANG_SAVING=N makes the Nth
  epoch's save hang inside accelerate's optimizer write (a stuck network volume): the state folder
  then holds what accelerate had written, train_state.json and model.safetensors;
- every start is a JSON line in `<output_dir>/invocations.jsonl` (argv, pid, pgid, worker pid, the
  step it starts from, whether it saw the FluxGym environment).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tarfile
import time
from dataclasses import dataclass
from pathlib import Path

import podsim

FLUXGYM_TARBALL = "fluxgym-678add2.tar.gz"


def realparts() -> Path:
    """The project's shared/realparts folder (or $PODCHECK_REALPARTS)."""
    candidates = [os.environ.get("PODCHECK_REALPARTS", "")] + [
        str(up / "shared" / "realparts") for up in (podsim.REPO, podsim.REPO.parent, podsim.REPO.parent.parent)]
    for folder in filter(None, candidates):
        if (Path(folder) / FLUXGYM_TARBALL).is_file():
            return Path(folder)
    raise RuntimeError(f"no {FLUXGYM_TARBALL} in {', '.join(filter(None, candidates))} (set PODCHECK_REALPARTS)")


def fluxgym_app() -> Path:
    """FluxGym's app.py, models.yaml and requirements.txt as its authors ship them, unpacked once."""
    def unpack(tmp: Path) -> None:
        with tarfile.open(realparts() / FLUXGYM_TARBALL) as tar:
            tar.extractall(tmp, filter="data")
    top = podsim.cached("realparts-fluxgym-678add2", unpack)
    return next(p.parent for p in top.rglob("app.py"))


def python() -> Path:
    """The trainer's interpreter: CPU torch plus real accelerate (podsim.accelerate_venv)."""
    return podsim.accelerate_venv()


# FluxGym's app.py imports gradio, torch, transformers, gradio_logsview, huggingface_hub and sd-scripts
# at module level and builds its whole UI there, none of which can be had or run here. gen_sh() itself
# needs only os, sys, yaml, the module's `models` (from models.yaml) and resolve_path(), and reads two
# globals that the UI's init_advanced() fills (the Advanced tab's flag names and their initial values).
# So this runs app.py's own code for exactly those parts, taken from its syntax tree: no stub of any UI
# module is needed, and the script text is what FluxGym writes (start_training() writes gen_sh()'s
# result to outputs/<name>/train.sh as is).
GEN_SH = r'''
import ast, json, os, sys, yaml
app, spec = sys.argv[1], json.loads(sys.argv[2])
tree = ast.parse(open(app, encoding="utf-8").read(), app)
wanted = {"resolve_path", "resolve_path_without_quotes", "gen_sh"}
keep = [n for n in tree.body if (isinstance(n, ast.FunctionDef) and n.name in wanted)
        or (isinstance(n, ast.With) and ast.unparse(n.items[0].context_expr).startswith("open('models.yaml'"))]
assert len(keep) == 4, [getattr(n, "name", "with") for n in keep]
space = {"__file__": app, "__name__": "fluxgym_app", "os": os, "sys": sys, "yaml": yaml}
os.chdir(os.path.dirname(app))
exec(compile(ast.Module(body=keep, type_ignores=[]), app, "exec"), space)
space["advanced_component_ids"] = [flag for flag, _, _ in spec["advanced"]]
space["original_advanced_component_values"] = [initial for _, initial, _ in spec["advanced"]]
import contextlib, io
with contextlib.redirect_stdout(io.StringIO()):  # gen_sh prints its inputs
    text = space["gen_sh"](*spec["args"], *[value for _, _, value in spec["advanced"]])
sys.stdout.write(text)
'''


def gen_sh(root: Path, name: str, *, advanced: dict[str, object] | None = None, max_train_epochs: int = 16,
           save_every_n_epochs: int = 1, vram: str = "20G") -> str:
    """train.sh as FluxGym's gen_sh() writes it for a FluxGym folder at `root` (app.py copied there).

    `advanced`: Advanced-tab flags changed from their defaults, e.g. {"--save_state": True}."""
    _place_app(root)
    args = ["flux-dev", name, 512, 42, 2, "8e-4", 4, max_train_epochs, save_every_n_epochs, "shift", 1, vram, "", 0]
    flags = [(flag, False if value is True else "", value) for flag, value in (advanced or {}).items()]
    done = subprocess.run([str(python()), "-c", GEN_SH, str(root / "app.py"), json.dumps({"args": args, "advanced": flags})],
                          check=False, capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"FluxGym's gen_sh failed: {done.stderr[-2000:]}")
    return done.stdout


def _place_app(root: Path) -> None:
    root.mkdir(parents=True, exist_ok=True)
    if not (root / "app.py").exists():
        for name in ("app.py", "models.yaml", "requirements.txt"):
            shutil.copy2(fluxgym_app() / name, root / name)


ACCELERATE = """#!{python}
# the console script pip writes for accelerate
import sys
from accelerate.commands.accelerate_cli import main
sys.exit(main())
"""

TRAINER = r'''
import argparse, json, os, subprocess, sys, time, tomllib
import torch
import accelerate.checkpointing
from accelerate import Accelerator

p = argparse.ArgumentParser()
for flag in ("--output_dir", "--output_name", "--resume", "--dataset_config", "--config_file", "--logging_dir"):
    p.add_argument(flag)
for flag in ("--save_state", "--save_state_on_train_end"):
    p.add_argument(flag, action="store_true")
p.add_argument("--save_every_n_epochs", type=int)
p.add_argument("--save_every_n_steps", type=int)
p.add_argument("--max_train_epochs", type=int, default=100)
args, _ = p.parse_known_args()
if args.config_file:  # sd-scripts' read_config_from_file: sections flattened, the command line wins
    path = args.config_file if args.config_file.endswith(".toml") else args.config_file + ".toml"
    with open(path, "rb") as fh:
        config = tomllib.load(fh)
    flat = {}
    for key, value in config.items():
        flat.update(value if isinstance(value, dict) else {key: value})
    args, _ = p.parse_known_args(namespace=argparse.Namespace(**flat))
per_epoch = int(os.environ.get("TRAIN_STEPS_PER_EPOCH", "2"))
stall_after = int(os.environ.get("TRAIN_STALL_AFTER", "1000000"))
hang_saving = int(os.environ.get("TRAIN_HANG_SAVING", "0"))

def stall(why):
    open(os.path.join(args.output_dir, f"stalled-{os.getpid()}"), "w").close()
    print(why, flush=True)
    while True:
        time.sleep(1)

accelerator = Accelerator(cpu=True)
network = torch.nn.Linear(8, 8)
optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
network, optimizer, scheduler = accelerator.prepare(network, optimizer, scheduler)
current_epoch, current_step, loaded = 0, 0, {}

def save_model_hook(models, weights, output_dir):  # train_network.py's hook, before accelerate's own files
    with open(os.path.join(output_dir, "train_state.json"), "w", encoding="utf-8") as f:
        json.dump({"current_epoch": current_epoch, "current_step": current_step + 1}, f)

def load_model_hook(models, input_dir):
    train_state_file = os.path.join(input_dir, "train_state.json")
    if os.path.exists(train_state_file):
        with open(train_state_file, "r", encoding="utf-8") as f:
            loaded.update(json.load(f))
        print(f"load train state from {train_state_file}: {loaded}", flush=True)

accelerator.register_save_state_pre_hook(save_model_hook)
accelerator.register_load_state_pre_hook(load_model_hook)

real_save = accelerate.checkpointing.save
saves = [0]
def save(obj, path, *a, **kw):
    if hang_saving and saves[0] == hang_saving and os.path.basename(str(path)).startswith("optimizer"):
        stall(f"hung writing {path}")
    return real_save(obj, path, *a, **kw)
accelerate.checkpointing.save = save

def save_state(folder, what):
    saves[0] += 1
    print(f"saving state at {what}", flush=True)
    accelerator.save_state(os.path.join(args.output_dir, folder))

worker = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)"])
if args.resume:
    accelerator.load_state(args.resume)
global_step = loaded.get("current_step", 0)
with open(os.path.join(args.output_dir, "invocations.jsonl"), "a") as fh:
    fh.write(json.dumps({"argv": sys.argv[1:], "pid": os.getpid(), "pgid": os.getpgrp(), "ppid": os.getppid(),
                         "worker": worker.pid, "start_step": global_step,
                         "fluxgym_env": os.environ.get("FLUXGYM_ENV")}) + "\n")
for _ in range(stall_after):
    current_step = global_step
    current_epoch = global_step // per_epoch + 1
    optimizer.step()
    time.sleep(0.02)
    global_step += 1
    print(f"steps: {global_step}", flush=True)
    if args.save_state and args.save_every_n_steps and global_step % args.save_every_n_steps == 0:
        save_state(f"{args.output_name or 'at'}-step{global_step:08d}-state", f"step {global_step}")
    if global_step % per_epoch == 0:
        epoch = global_step // per_epoch
        if epoch >= args.max_train_epochs:
            if args.save_state_on_train_end:
                save_state(f"{args.output_name or 'last'}-state", "train end")
            sys.exit(0)
        if args.save_state and args.save_every_n_epochs and epoch % args.save_every_n_epochs == 0:
            save_state(f"{args.output_name or 'epoch'}-{epoch:06d}-state", f"epoch {epoch}")
stall("stalled")
'''


@dataclass
class FluxGym:
    root: Path
    name: str = "my-lora"

    @property
    def run_dir(self) -> Path:
        return self.root / "outputs" / self.name

    @property
    def script(self) -> Path:
        return self.run_dir / "train.sh"

    @property
    def env_bin(self) -> Path:
        return self.root / "env" / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """FluxGym's environment: its venv first on PATH, as LogsViewRunner passes it on."""
        return {**os.environ, "PATH": f"{self.env_bin}:{os.environ['PATH']}", "FLUXGYM_ENV": "1",
                "PYTHONIOENCODING": "utf-8", "LOG_LEVEL": "DEBUG", "HF_HOME": str(self.root / "hf"), **extra}

    def start(self, **extra: str) -> subprocess.Popen:
        """Run train.sh as FluxGym does: `bash "<train.sh>"`, cwd = fluxgym, in the caller's process group."""
        log = open(self.run_dir / "fluxgym.log", "ab")
        return subprocess.Popen(["bash", str(self.script)], cwd=self.root, env=self.env(**extra),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def invocations(self) -> list[dict]:
        path = self.run_dir / "invocations.jsonl"
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []

    def wait_stalled(self, count: int = 1, timeout: float = 90) -> dict:
        """The invocation that stalled `count`-th, once it has."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stalled = sorted(self.run_dir.glob("stalled-*"), key=lambda p: p.stat().st_mtime)
            if len(stalled) >= count:
                pid = int(stalled[count - 1].name.split("-", 1)[1])
                return next(i for i in self.invocations() if i["pid"] == pid)
            time.sleep(0.05)
        log = self.run_dir / "fluxgym.log"
        tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
        raise TimeoutError(f"training did not stall {count} time(s) in {timeout} s: {self.invocations()}\n{tail}")

    def cleanup(self) -> None:
        """Kill every process the runs started (trainers, workers, relaunched groups), by pid; also the
        group of any `bash <this train.sh>` still running (a relaunch that never got to write its start)."""
        for proc in Path("/proc").iterdir():
            try:
                if proc.name.isdigit() and str(self.script) in (proc / "cmdline").read_text():
                    group = os.getpgid(int(proc.name))
                    if group != os.getpgrp():  # never the test's own group (FluxGym's first run shares it)
                        os.killpg(group, signal.SIGKILL)
                    else:
                        _kill(int(proc.name))
            except (OSError, ProcessLookupError):
                pass
        for inv in self.invocations():
            for pid in (inv["worker"], inv["pid"], inv["ppid"]):
                _kill(pid)
            if inv["pgid"] != os.getpgrp():
                try:
                    os.killpg(inv["pgid"], signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def install(root: Path) -> None:
    """FluxGym's folder: app.py, the accelerate CLI in its env, and sd-scripts' trainer (the stand-in)."""
    _place_app(root)
    bin_dir = root / "env" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    (bin_dir / "accelerate").write_text(ACCELERATE.format(python=python()))
    (bin_dir / "accelerate").chmod(0o755)
    (root / "sd-scripts").mkdir(exist_ok=True)
    (root / "sd-scripts" / "flux_train_network.py").write_text(TRAINER)


def fluxgym(root: Path, save_state: bool = True, name: str = "my-lora", extra: str = "",
            script: str | None = None) -> FluxGym:
    """A FluxGym folder with the train.sh FluxGym's gen_sh() writes (FluxGym leaves --save_state out
    unless it is ticked in the Advanced tab, which appends it); `script` replaces that text."""
    gym = FluxGym(root, name)
    install(root)
    gym.run_dir.mkdir(parents=True)
    (gym.run_dir / "dataset.toml").write_text("[general]\n")
    text = script if script is not None else gen_sh(root, name, advanced={"--save_state": True} if save_state else None)
    gym.script.write_text(text + extra)
    return gym


SAVE_ONE_STATE = r'''
import sys, torch
from accelerate import Accelerator
accelerator = Accelerator(cpu=True)
network = torch.nn.Linear(8, 8)
optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
accelerator.prepare(network, optimizer, scheduler)
accelerator.save_state(sys.argv[1])
'''


def state_files() -> Path:
    """A state folder as real accelerate save_state writes it (weights, optimizer, scheduler, random
    states), made once; copy it to make states of any name."""
    def build(tmp: Path) -> None:
        subprocess.run([str(python()), "-c", SAVE_ONE_STATE, str(tmp / "state")], check=True,
                       capture_output=True, timeout=300, env={**os.environ, "HF_HOME": str(tmp / "hf")})
    return podsim.cached("accelerate-state-1.15.0", build) / "state"


def make_state(folder: Path, name: str, step: int | None = None, epoch: int | None = None,
               mtime: float | None = None, parts: tuple[str, ...] | None = None) -> str:
    """`folder/name`: accelerate's files (only `parts` of them, when given: a torn save) and the
    train_state.json train_network.py's hook writes; its path."""
    path = folder / name
    path.mkdir(parents=True)
    for file in state_files().iterdir():
        if parts is None or file.name in parts:
            shutil.copy2(file, path / file.name)
    (path / "train_state.json").write_text(json.dumps({"current_epoch": epoch, "current_step": step}))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return str(path)
