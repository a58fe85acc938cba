"""training.progress: real stand-in processes named like kohya scripts that write step states, then stop
progressing; GPU utilisation history and GPU-to-training ties judged on recorded NVML facts."""
from __future__ import annotations

import doctest
import json
import os
import re
import sys
import time
from pathlib import Path

import pytest

from podcheck.domain import samples, trainings
from podcheck.domain.samples import Samples, below_for

DATA = Path(__file__).parent / "data" / "nvml"
SELECT = ["--select", "training", "--select", "pod", "--select", "disk", "--json", "-"]

# Writes a kohya-style step state (`<name>-step00000001-state/train_state.json`) every --step_seconds until
# --stop_file exists, then stays alive without progressing, as a training stuck in a data loader does.
STAND_IN = '''\
import argparse, json, os, time
p = argparse.ArgumentParser()
p.add_argument("--output_dir"); p.add_argument("--output_name", default="at")
p.add_argument("--save_state", action="store_true"); p.add_argument("--step_seconds", type=float, default=0.2)
p.add_argument("--stop_file")
args, _ = p.parse_known_args()
os.makedirs(args.output_dir, exist_ok=True)
step = 0
while not os.path.exists(args.stop_file):
    step += 1
    state = os.path.join(args.output_dir, "%s-step%08d-state" % (args.output_name, step))
    os.makedirs(state, exist_ok=True)
    with open(os.path.join(state, "train_state.json"), "w") as fh:
        json.dump({"current_epoch": 0, "current_step": step}, fh)
    time.sleep(args.step_seconds)
while True:
    time.sleep(60)
'''


def stand_in(folder: Path, name: str) -> Path:
    script = folder / name
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(STAND_IN)
    return script


def wait_for_state(folder: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not any(folder.glob("*-state")) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert any(folder.glob("*-state")), f"the stand-in wrote nothing into {folder}"


def test_nothing_trains(cpu_pod):
    run = cpu_pod.podcheck(*SELECT)
    assert run.status("training.progress") == "skipped" and run.result("training.progress")["message"] == "no training runs"


def test_stand_in_progresses_then_gets_stuck(cpu_pod, spawn, tmp_path):
    ws = cpu_pod.workspace
    fluxgym = ws / "fluxgym"
    stand_in(fluxgym / "sd-scripts", "flux_train_network.py")
    out = fluxgym / "outputs" / "mylora"
    out.mkdir(parents=True)
    stop = tmp_path / "stop-mylora"
    train_sh = out / "train.sh"  # FluxGym's script, without --save_state (its default)
    train_sh.write_text(
        f'{sys.executable} sd-scripts/flux_train_network.py \\\n  --output_dir "{out}" \\\n'
        f'  --output_name mylora \\\n  --stop_file "{stop}" \\\n  --loss_type l2\n')
    spawn(["bash", str(train_sh)], cwd=fluxgym)
    # a second training: sdxl, --save_state, output folder relative to its working directory
    stand_in(ws / "kohya", "sdxl_train_network.py")
    spawn([sys.executable, "sdxl_train_network.py", "--output_dir", "outputs/sdxl", "--save_state",
           "--stop_file", str(tmp_path / "never")], cwd=ws / "kohya")
    # a training outside the workspace is another pod's business
    stand_in(tmp_path / "elsewhere", "train_network.py")
    spawn([sys.executable, str(tmp_path / "elsewhere" / "train_network.py"), "--output_dir",
           str(tmp_path / "elsewhere" / "out"), "--stop_file", str(tmp_path / "never")])
    wait_for_state(out)
    wait_for_state(ws / "kohya" / "outputs" / "sdxl")
    cpu_pod.configure(training={"stuck_seconds": 3})

    run = cpu_pod.podcheck(*SELECT)
    msg = run.result("training.progress")["message"]
    assert run.status("training.progress") == "passed", msg
    assert re.search(rf"{re.escape(str(out))}: last write [0-2] s ago; latest state {re.escape(str(out))}/mylora-step", msg), msg
    assert f"{ws}/kohya/outputs/sdxl: last write" in msg
    assert f"Warning: {out} runs without --save_state, so it cannot be resumed, only restarted; add it to {train_sh}" in msg
    assert "sdxl runs without" not in msg and "elsewhere" not in msg

    stop.touch()
    time.sleep(3.6)
    run = cpu_pod.podcheck(*SELECT)
    msg = run.result("training.progress")["message"]
    assert run.status("training.progress") == "failed", msg
    assert f"training {out} (sd-scripts/flux_train_network.py, pid" in msg
    assert "looks stuck: nothing new in its output folder for" in msg and "(stuck_seconds = 3)" in msg
    assert f"latest state {out}/mylora-step" in msg and run.result("training.progress")["repair"] == "training.resume"
    assert "Warning:" in msg and "sdxl" not in msg.split("Warning:")[0]
    assert run.status("pod.workspace") == "passed" and run.status("disk.workspace") == "passed"


# --- GPU samples and GPU ties on recorded facts -------------------------------------------------------

def test_samples_history_per_host(cpu_pod):
    pod = cpu_pod.live()
    s = Samples(pod, keep_seconds=80)
    nvml = json.loads((DATA / "h100.json").read_text())["nvml"]
    for t, util in ((1000, 97.0), (1030, 2.0), (1060, 0.0), (1090, 1.0)):
        s.record_gpus({"gpus": [dict(nvml["gpus"][0], utilization=util)]}, t)
    s.record_activity("/w/out", 1050.0, 1090)
    points = Samples(pod).series("gpu.0.util")
    assert points == [(1030.0, 2.0), (1060.0, 0.0), (1090.0, 1.0)], "points older than keep_seconds are dropped"
    assert Samples(pod).series("activity:/w/out") == [(1090.0, 1050.0)]
    assert below_for(points, 5.0, now=1100, max_gap=60) == 70
    assert below_for(points + [(1095.0, 50.0)], 5.0, now=1100, max_gap=60) == 0
    assert below_for(points, 5.0, now=1200, max_gap=60) == 0, "no recent sample: nothing is known"
    doc = json.loads((cpu_pod.state_dir / "samples.json").read_text())
    assert list(doc["hosts"]) == [os.uname().nodename]


def test_gpu_tie_by_pid_environment_or_default(cpu_pod, spawn):
    pod = cpu_pod.live()
    h100 = json.loads((DATA / "h100.json").read_text())["nvml"]["gpus"][0]
    ada = dict(json.loads((DATA / "rtx4090.json").read_text())["nvml"]["gpus"][0], index=1)
    proc = spawn(["sleep", "60"], env={**os.environ, "CUDA_VISIBLE_DEVICES": ada["uuid"]})
    t = trainings.Training(script="train_network.py", output_dir="/w/out", cwd="/w", pids=[proc.pid])
    assert trainings.gpus_of(pod, t, [h100, ada]) == [1], "CUDA_VISIBLE_DEVICES by UUID"
    by_pid = dict(h100, processes=[{"pid": proc.pid, "used_memory": 1 << 30}])
    assert trainings.gpus_of(pod, t, [by_pid, ada]) == [0], "NVML's process list wins where pids match"
    plain = spawn(["sleep", "60"], env={k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"})
    t.pids = [plain.pid]
    assert trainings.gpus_of(pod, t, [h100, ada]) == [0], "torch's default device"
    assert trainings.gpus_of(pod, t, []) == []


@pytest.mark.parametrize("argv, script", [
    (["python", "sd-scripts/flux_train_network.py", "--output_dir", "o"], "sd-scripts/flux_train_network.py"),
    (["/v/bin/python", "/v/bin/accelerate", "launch", "--num_cpu_threads_per_process", "1",
      "sd-scripts/flux_train_network.py"], "sd-scripts/flux_train_network.py"),
    (["/v/bin/python", "/v/bin/accelerate", "launch", "--mixed_precision", "bf16", "train_db.py"], "train_db.py"),
    (["python", "sdxl_train.py"], "sdxl_train.py"),
    (["python", "sd3_train_network.py"], "sd3_train_network.py"),
    (["python", "main.py", "--listen"], None),
    (["python", "train.py"], None),
])
def test_script_of(argv, script):
    assert trainings.script_of(argv) == script


def test_module_examples():
    """The examples in the modules' docstrings hold."""
    for module in (samples, trainings,):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__
