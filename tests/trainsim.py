"""A FluxGym install in miniature, for training tests: a real `train.sh` in FluxGym's format that runs
`accelerate launch ... sd-scripts/flux_train_network.py ...` through real processes.

- `env/bin/accelerate` (only on the FluxGym env's PATH, as on a pod) starts the trainer as a child,
  like `accelerate launch` does;
- the trainer parses kohya's flags, loads `--resume <state>` (train_state.json), trains in steps,
  writes `<name>-<epoch:06d>-state/train_state.json` every `--save_every_n_epochs` when `--save_state`
  is given, keeps a "data loader worker" child that ignores SIGTERM, and after $TRAIN_STALL_AFTER
  steps stops progressing (sleeps, like a run stuck at 0 % GPU);
- every start is a JSON line in `<output_dir>/invocations.jsonl` (argv, pid, pgid, worker pid,
  whether it saw the FluxGym environment).
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ACCELERATE = f"""#!{sys.executable}
import subprocess, sys
args = sys.argv[2:]  # after "launch"
while args and not args[0].endswith(".py"):
    args = args[2:] if args[0] in ("--mixed_precision", "--num_cpu_threads_per_process") else args[1:]
sys.exit(subprocess.call([sys.executable, *args]))
"""

TRAINER = r'''
import argparse, json, os, signal, subprocess, sys, time
p = argparse.ArgumentParser()
for flag in ("--output_dir", "--output_name", "--resume", "--dataset_config"):
    p.add_argument(flag)
p.add_argument("--save_state", action="store_true")
p.add_argument("--save_every_n_epochs", type=int, default=1)
p.add_argument("--max_train_epochs", type=int, default=100)
args, _ = p.parse_known_args()
per_epoch = int(os.environ.get("TRAIN_STEPS_PER_EPOCH", "2"))
stall_after = int(os.environ.get("TRAIN_STALL_AFTER", "1000000"))
worker = subprocess.Popen([sys.executable, "-c",
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(1)"])
step = 0
if args.resume:
    with open(os.path.join(args.resume, "train_state.json")) as fh:
        step = json.load(fh)["current_step"]
    print(f"load train state from {args.resume}: {step}", flush=True)
with open(os.path.join(args.output_dir, "invocations.jsonl"), "a") as fh:
    fh.write(json.dumps({"argv": sys.argv[1:], "pid": os.getpid(), "pgid": os.getpgrp(), "ppid": os.getppid(),
                         "worker": worker.pid, "start_step": step,
                         "fluxgym_env": os.environ.get("FLUXGYM_ENV")}) + "\n")
for _ in range(stall_after):
    time.sleep(0.02)
    step += 1
    print(f"steps: {step}", flush=True)
    if step % per_epoch == 0:
        epoch = step // per_epoch
        if args.save_state and epoch % args.save_every_n_epochs == 0:
            state = os.path.join(args.output_dir, f"{args.output_name}-{epoch:06d}-state")
            os.makedirs(state, exist_ok=True)
            open(os.path.join(state, "optimizer.bin"), "wb").write(b"\0" * 64)
            with open(os.path.join(state, "train_state.json"), "w") as fh:
                json.dump({"current_epoch": epoch, "current_step": step}, fh)
            print(f"saving state at epoch {epoch}", flush=True)
        if epoch >= args.max_train_epochs:
            sys.exit(0)
open(os.path.join(args.output_dir, f"stalled-{os.getpid()}"), "w").close()
print("stalled", flush=True)
while True:
    time.sleep(1)
'''

TRAIN_SH = """accelerate launch \\
  --mixed_precision bf16 \\
  --num_cpu_threads_per_process 1 \\
  sd-scripts/flux_train_network.py \\
  --pretrained_model_name_or_path "{root}/models/unet/flux1-dev.sft" \\
  --clip_l "{root}/models/clip/clip_l.safetensors" \\
  --t5xxl "{root}/models/clip/t5xxl_fp16.safetensors" \\
  --ae "{root}/models/vae/ae.sft" \\
  --cache_latents_to_disk \\
  --save_model_as safetensors \\
  --sdpa --persistent_data_loader_workers \\
  --max_data_loader_n_workers 2 \\
  --seed 42 \\
  --gradient_checkpointing \\
  --mixed_precision bf16 \\
  --save_precision bf16 \\
  --network_module networks.lora_flux \\
  --network_dim 4 \\
  --optimizer_type adamw8bit \\
  --learning_rate 8e-4 \\
  --cache_text_encoder_outputs \\
  --cache_text_encoder_outputs_to_disk \\
  --fp8_base \\
  --highvram \\
  --max_train_epochs 16 \\
  --save_every_n_epochs 1 \\
  --dataset_config "{root}/outputs/{name}/dataset.toml" \\
  --output_dir "{root}/outputs/{name}" \\
  --output_name {name} \\
  --timestep_sampling shift \\
  --discrete_flow_shift 3.1582 \\
  --model_prediction_type raw \\
  --guidance_scale 1 \\
  --loss_type l2 \\"""


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
                "PYTHONIOENCODING": "utf-8", "LOG_LEVEL": "DEBUG", **extra}

    def start(self, **extra: str) -> subprocess.Popen:
        """Run train.sh as FluxGym does: `bash "<train.sh>"`, cwd = fluxgym, in the caller's process group."""
        log = open(self.run_dir / "fluxgym.log", "ab")
        return subprocess.Popen(["bash", str(self.script)], cwd=self.root, env=self.env(**extra),
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def invocations(self) -> list[dict]:
        path = self.run_dir / "invocations.jsonl"
        return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []

    def wait_stalled(self, count: int = 1, timeout: float = 20) -> dict:
        """The invocation that stalled `count`-th, once it has."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            stalled = sorted(self.run_dir.glob("stalled-*"), key=lambda p: p.stat().st_mtime)
            if len(stalled) >= count:
                pid = int(stalled[count - 1].name.split("-", 1)[1])
                return next(i for i in self.invocations() if i["pid"] == pid)
            time.sleep(0.05)
        raise TimeoutError(f"training did not stall {count} time(s) in {timeout} s: {self.invocations()}")

    def cleanup(self) -> None:
        """Kill every process the runs started (trainers, workers, relaunched groups), by pid."""
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


def fluxgym(root: Path, save_state: bool = True, name: str = "my-lora", extra: str = "") -> FluxGym:
    """A FluxGym folder with a generated train.sh (FluxGym leaves --save_state out unless asked)."""
    gym = FluxGym(root, name)
    gym.env_bin.mkdir(parents=True)
    (gym.env_bin / "accelerate").write_text(ACCELERATE)
    (gym.env_bin / "accelerate").chmod(0o755)
    (root / "sd-scripts").mkdir()
    (root / "sd-scripts" / "flux_train_network.py").write_text(TRAINER)
    gym.run_dir.mkdir(parents=True)
    (gym.run_dir / "dataset.toml").write_text("[general]\n")
    text = TRAIN_SH.format(root=root, name=name)
    if save_state:
        text += "\n  --save_state"  # FluxGym appends changed "Advanced" flags like this
    gym.script.write_text(text + extra)
    return gym
