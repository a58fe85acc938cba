"""training.resume on a real FluxGym-style run: stop the stuck run, resume from its newest state."""
from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import testinfra

import podsim
import trainsim
from podcheck import config as config_mod
from podcheck.domain import resume, trainscript
from podcheck.host.pod import Pod
from podcheck.host.state import State


@pytest.fixture
def pod(tmp_path):
    sim = podsim.SimPod(tmp_path)
    sim.workspace.mkdir()
    sim.configure(pod={"workspace": str(sim.workspace), "gpu": "absent"}, training={"kill_grace_seconds": 1.0})
    return Pod(config_mod.load(sim.config_path, env={}), testinfra.get_host("local://"))


@pytest.fixture
def gym(tmp_path):
    made = []

    def make(**kw) -> trainsim.FluxGym:
        made.append(trainsim.fluxgym(tmp_path / f"fluxgym{len(made)}", **kw))
        return made[-1]
    yield make
    for g in made:
        g.cleanup()


def gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rpartition(")")[2].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


# --- the launch script ------------------------------------------------------------------------------

FLUXGYM_DEFAULT = trainsim.TRAIN_SH.format(root="/workspace/fluxgym", name="x")


def test_resume_is_appended_to_the_launch_command_wherever_it_ends():
    # FluxGym's default script ends in "--loss_type l2 \" with no newline: still one command.
    edited = trainscript.with_resume(FLUXGYM_DEFAULT, "/w/x-000002-state")
    args = [w.value for w in trainscript.arguments(trainscript.launch_command(edited))]
    assert args[-2:] == ["--resume", "/w/x-000002-state"]
    assert edited.startswith(FLUXGYM_DEFAULT.rsplit(" \\", 1)[0])

    piped = "cd /x\naccelerate launch a/train_network.py --a 1 \\\n  --b 2 2>&1 | tee 'run log' # note\necho done\n"
    edited = trainscript.with_resume(piped, "/s p/x-state")
    assert edited == ("cd /x\naccelerate launch a/train_network.py --a 1 \\\n  --b 2 \\\n  --resume '/s p/x-state'"
                      " 2>&1 | tee 'run log' # note\necho done\n")
    one_line = "python sdxl_train_network.py --save_state --output_dir=o\n"
    assert trainscript.with_resume(one_line, "/o/s") == "python sdxl_train_network.py --save_state --output_dir=o --resume /o/s\n"


def test_resume_replaces_instead_of_stacking():
    once = trainscript.with_resume(FLUXGYM_DEFAULT + "\n  --save_state", "/w/x-000002-state")
    twice = trainscript.with_resume(once, "/w/x-000004-state")
    words = [w.value for w in trainscript.arguments(trainscript.launch_command(twice))]
    assert words.count("--resume") == 1 and words[-2:] == ["--resume", "/w/x-000004-state"]
    assert "--save_state" in words
    middle = "accelerate launch t/flux_train_network.py \\\n  --resume=/old \\\n  --resume /older \\\n  --seed 1\n"
    assert trainscript.with_resume(middle, "/new") == "accelerate launch t/flux_train_network.py \\\n  --seed 1 \\\n  --resume /new\n"
    assert trainscript.with_resume(middle, None) == "accelerate launch t/flux_train_network.py \\\n  --seed 1\n"
    with pytest.raises(ValueError, match="no command"):
        trainscript.with_resume("echo hello\n", "/x")


def test_flags_are_read_from_the_launch_command_only():
    text = '# --save_state in a comment\necho --output_dir /nope\naccelerate launch s/train_network.py --output_dir "/a b" --save_state_on_train_end\n'
    assert trainscript.flag_value(text, "--output_dir") == "/a b"
    assert not trainscript.has_flag(text, "--save_state")
    assert trainscript.has_flag(text + "", "--save_state_on_train_end")


# --- checkpoints ------------------------------------------------------------------------------------

def make_state(folder, name, step=None, epoch=None, valid=True, mtime=None):
    path = folder / name
    path.mkdir(parents=True)
    if valid:
        (path / "train_state.json").write_text(json.dumps({"current_step": step, "current_epoch": epoch}))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return str(path)


def test_newest_checkpoint_by_step_then_mtime(pod, tmp_path):
    out = tmp_path / "out"
    now = time.time()
    make_state(out, "x-000002-state", step=20, epoch=2, mtime=now)
    make_state(out, "x-step00000030-state", step=30, epoch=2, mtime=now - 100)   # newer by step, older by mtime
    make_state(out, "x-step00000099-state", valid=False)                         # no train_state.json
    make_state(out, "y-step00000500-state", step=500, epoch=9)                   # another run's states
    (out / "x-step00000040-state").mkdir()
    (out / "x-step00000040-state" / "train_state.json").write_text("{torn")       # a torn save
    found = resume.checkpoints(pod, str(out), "x")
    assert [os.path.basename(c.path) for c in found] == ["x-000002-state", "x-step00000030-state"]
    assert found[-1].step == 30
    make_state(out, "x-step00000030b-state", step=30, epoch=2)                   # not a kohya name
    make_state(out, "x-000003-state", step=30, epoch=3, mtime=now - 50)
    assert os.path.basename(resume.checkpoints(pod, str(out), "x")[-1].path) == "x-000003-state"
    make_state(out, "x-state", step=32, epoch=4)                                 # end of training
    assert os.path.basename(resume.checkpoints(pod, str(out), "x")[-1].path) == "x-state"
    assert resume.checkpoints(pod, str(tmp_path / "missing"), "x") == []


# --- the repair on real runs ------------------------------------------------------------------------

def test_stuck_run_is_stopped_and_resumed_from_its_newest_state(pod, gym):
    g = gym()
    original = g.script.read_text()
    fluxgym_proc = g.start(TRAIN_STALL_AFTER="4")
    first = g.wait_stalled(1)
    # The FluxGym run shares the test's process group: only its tree may be stopped.
    assert first["pgid"] == os.getpgrp()

    out = resume.resume(pod, first["pid"], grace=0.5)
    assert out.status == "changed", out.message
    newest = str(g.run_dir / "my-lora-000002-state")
    assert out.checkpoint == newest and f"--resume {newest}" in out.message
    assert "SIGKILL for 1" in out.message  # the worker ignores SIGTERM
    fluxgym_proc.wait(5)
    assert all(gone(pid) for pid in (first["pid"], first["worker"], first["ppid"]))
    assert os.getpgrp() and not gone(os.getpid())  # the caller's group survived

    second = g.wait_stalled(2)
    assert second["argv"][-2:] == ["--resume", newest] and second["start_step"] == 4
    assert second["fluxgym_env"] == "1"  # relaunched with the stuck run's environment
    assert second["pgid"] == out.pid != os.getpgrp()  # detached: the new launcher leads its own group
    assert (g.run_dir / resume.LOG_NAME).read_text().count("load train state from") == 1
    assert not (g.run_dir / resume.ENV_NAME).exists()
    assert State(pod).read(resume.STATE_NAME)["runs"][str(g.script)]["pid"] == out.pid
    backup1 = out.backup
    assert open(backup1).read() == original

    # Second stall: --resume is replaced, not stacked; the first backup is kept.
    again = resume.resume(pod, second["pid"], grace=0.5)
    assert again.status == "changed", again.message
    assert again.checkpoint == str(g.run_dir / "my-lora-000004-state")
    assert again.backup != backup1 and open(backup1).read() == original
    assert open(again.backup).read() != original
    assert all(gone(pid) for pid in (second["pid"], second["worker"], out.pid))
    third = g.wait_stalled(3)
    assert third["start_step"] == 8 and third["argv"].count("--resume") == 1
    assert trainscript.flag_value(g.script.read_text(), "--resume") == again.checkpoint
    assert g.script.read_text().count("--resume") == 1
    assert sorted(p.name for p in g.run_dir.glob("train.sh.bak-*")) == sorted(
        os.path.basename(b) for b in (backup1, again.backup))


def test_no_checkpoint_restarts_from_the_beginning(pod, gym):
    g = gym()
    original = g.script.read_text()
    g.start(TRAIN_STALL_AFTER="1")
    first = g.wait_stalled(1)
    out = resume.resume(pod, first["worker"], grace=0.5)   # any pid of the run will do
    assert out.status == "changed", out.message
    assert "from the beginning" in out.message and out.checkpoint is None and out.backup is None
    second = g.wait_stalled(2)
    assert second["start_step"] == 0 and "--resume" not in second["argv"]
    assert g.script.read_text() == original
    assert not list(g.run_dir.glob("train.sh.bak-*"))


def test_a_relaunch_that_cannot_start_says_how_to_start_it(pod, gym, tmp_path):
    g = gym()
    work = tmp_path / "work"  # the run's working directory, removed while it is stuck
    work.mkdir()
    (work / "sd-scripts").symlink_to(g.root / "sd-scripts")
    subprocess.Popen(["bash", str(g.script)], cwd=work, env=g.env(TRAIN_STALL_AFTER="4"),
                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = g.wait_stalled(1)
    (work / "sd-scripts").unlink()
    work.rmdir()
    out = resume.resume(pod, first["pid"], grace=0.5)
    assert out.status == "failed" and out.message.startswith("stopped 4 processes")
    assert f"start it again by hand (cd {work} && bash {g.script})" in out.message
    assert not (g.run_dir / resume.ENV_NAME).exists()  # the copy of its environment does not linger


def test_runs_that_cannot_be_resumed_are_left_alone(pod, gym, tmp_path):
    g = gym(save_state=False)
    original = g.script.read_text()
    g.start(TRAIN_STALL_AFTER="4")
    first = g.wait_stalled(1)
    out = resume.resume(pod, first["pid"], grace=0.5)
    assert out.status == "skipped" and "lacks --save_state" in out.message
    assert not gone(first["pid"]) and not gone(first["worker"])
    assert g.script.read_text() == original and not list(g.run_dir.glob("train.sh.bak-*"))

    bat = gym()
    (bat.run_dir / "train.bat").write_text(bat.script.read_text())
    proc = subprocess.Popen(["bash", str(bat.run_dir / "train.bat")], cwd=bat.root,
                                          env=bat.env(TRAIN_STALL_AFTER="1"), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
    stalled = bat.wait_stalled(1)
    out = resume.resume(pod, stalled["pid"], grace=0.5)
    assert out.status == "skipped" and "Windows script" in out.message
    assert not gone(stalled["pid"]) and proc.poll() is None

    assert resume.resume(pod, 2 ** 22 + 7).status == "skipped"  # no such process
