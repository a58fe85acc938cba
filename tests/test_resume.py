"""training.resume on a real FluxGym-style run: stop the stuck run, resume from its newest state."""
from __future__ import annotations

import json
import os
import subprocess
import time

import fixsim
import podsim
import pytest
import testinfra
import trainsim

from podcheck import config as config_mod
from podcheck.domain import checkpoints, resume, trainscript
from podcheck.fix.repair import Context
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

@pytest.fixture(scope="module")
def fluxgym_default(tmp_path_factory):
    """train.sh as FluxGym's gen_sh() writes it by default: it ends in "--loss_type l2 \\", no newline."""
    return trainsim.gen_sh(tmp_path_factory.mktemp("fluxgym"), "x")


def bash_argv(script: str, tmp_path) -> list[str]:
    """The arguments real bash passes to `accelerate` when it runs `script` as FluxGym does (`bash train.sh`;
    accelerate: an exported function that prints them)."""
    path = tmp_path / "train.sh"
    path.write_text(script)
    printer = 'accelerate() { python3 -c "import json, sys; print(json.dumps(sys.argv[1:]))" "$@"; }'
    done = subprocess.run(["bash", "-c", f'{printer}; export -f accelerate; bash "$0"', str(path)], capture_output=True, text=True,
                          timeout=30, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_resume_is_appended_to_the_launch_command_wherever_it_ends(fluxgym_default, tmp_path):
    assert fluxgym_default.endswith("--loss_type l2 \\")
    edited = trainscript.with_resume(fluxgym_default, "/w/x-000002-state")
    args = [w.value for w in trainscript.arguments(trainscript.launch_command(edited))]
    assert args[-4:] == ["--loss_type", "l2", "--resume", "/w/x-000002-state"]
    assert edited.startswith(fluxgym_default.rsplit(" \\", 1)[0])
    # what bash makes of it: no stray " " argument from a `\ ` left before the addition
    ran = bash_argv(edited, tmp_path)
    assert ran[-4:] == ["--loss_type", "l2", "--resume", "/w/x-000002-state"] and " " not in ran, ran
    assert bash_argv(fluxgym_default, tmp_path)[-2:] == ["--loss_type", "l2"]

    piped = "cd /x\naccelerate launch a/train_network.py --a 1 \\\n  --b 2 2>&1 | tee 'run log' # note\necho done\n"
    edited = trainscript.with_resume(piped, "/s p/x-state")
    assert edited == ("cd /x\naccelerate launch a/train_network.py --a 1 \\\n  --b 2 \\\n  --resume '/s p/x-state'"
                      " 2>&1 | tee 'run log' # note\necho done\n")
    one_line = "python sdxl_train_network.py --save_state --output_dir=o\n"
    assert trainscript.with_resume(one_line, "/o/s") == "python sdxl_train_network.py --save_state --output_dir=o --resume /o/s\n"


def test_resume_replaces_instead_of_stacking(fluxgym_default):
    once = trainscript.with_resume(fluxgym_default + "\n  --save_state", "/w/x-000002-state")
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

def test_newest_checkpoint_by_step_then_mtime(pod, tmp_path):
    out = tmp_path / "out"
    now = time.time()
    make_state = trainsim.make_state
    make_state(out, "x-000002-state", step=20, epoch=2, mtime=now)
    make_state(out, "x-step00000030-state", step=30, epoch=2, mtime=now - 100)   # newer by step, older by mtime
    (out / "x-step00000099-state").mkdir()                                       # no train_state.json
    make_state(out, "y-step00000500-state", step=500, epoch=9)                   # another run's states
    (out / "x-step00000040-state").mkdir()
    (out / "x-step00000040-state" / "train_state.json").write_text("{torn")       # a torn save
    found = checkpoints.checkpoints(pod, str(out), "x")
    assert [os.path.basename(c.path) for c in found] == ["x-000002-state", "x-step00000030-state"]
    assert found[-1].step == 30
    make_state(out, "x-step00000030b-state", step=30, epoch=2)                   # not a kohya name
    make_state(out, "x-000003-state", step=30, epoch=3, mtime=now - 50)
    assert os.path.basename(checkpoints.checkpoints(pod, str(out), "x")[-1].path) == "x-000003-state"
    make_state(out, "x-state", step=32, epoch=4)                                 # end of training
    assert os.path.basename(checkpoints.checkpoints(pod, str(out), "x")[-1].path) == "x-state"
    assert checkpoints.checkpoints(pod, str(tmp_path / "missing"), "x") == []


def test_a_state_counts_only_when_accelerate_finished_writing_it(pod, tmp_path):
    out = tmp_path / "out"
    trainsim.make_state(out, "x-000002-state", step=4, epoch=2)
    # accelerate writes weights, optimizer, scheduler, then random states, after the hook's train_state.json
    trainsim.make_state(out, "x-000003-state", step=6, epoch=3, parts=("model.safetensors",))
    trainsim.make_state(out, "x-000004-state", step=8, epoch=4,
                        parts=("model.safetensors", "optimizer.bin", "scheduler.bin"))
    trainsim.make_state(out, "x-000005-state", step=10, epoch=5)
    (out / "x-000005-state" / "random_states_0.pkl").write_bytes(b"")          # created, never written
    rejected = []
    found = checkpoints.checkpoints(pod, str(out), "x", rejected)
    assert [os.path.basename(c.path) for c in found] == ["x-000002-state"]
    assert sorted(rejected) == ["x-000003-state (incomplete: no optimizer.bin, random_states_0.pkl)",
                                "x-000004-state (incomplete: no random_states_0.pkl)",
                                "x-000005-state (incomplete: no random_states_0.pkl)"]


# --- the repair on real runs ------------------------------------------------------------------------

def test_stuck_run_is_stopped_and_resumed_from_its_newest_state(pod, gym):
    g = gym()
    original = g.script.read_text()
    fluxgym_proc = g.start(TRAIN_STALL_AFTER="4")
    first = g.wait_stalled(1)
    # The FluxGym run shares the test's process group: only its tree may be stopped.
    assert first["pgid"] == os.getpgrp()

    # The dry run (the repair's recorded runner in check mode) plans what the real run then does,
    # SIGKILL for the worker included: its /proc status says it ignores SIGTERM.
    planned = Context(pod=pod, dry_run=True)
    dry = resume.resume(pod, first["pid"], grace=0.5, act=planned)
    assert dry.status == "changed" and dry.message.startswith("would stop"), dry.message
    assert not gone(first["pid"]) and g.script.read_text() == original and not (g.run_dir / resume.ENV_NAME).exists()
    recorded = Context(pod=pod)
    out = resume.resume(pod, first["pid"], grace=0.5, act=recorded)
    assert out.status == "changed", out.message
    assert fixsim.unknowable(planned.commands) == fixsim.unknowable(recorded.commands)
    assert any("KILL" in c for c in recorded.commands) and len(recorded.commands) == 6, recorded.commands
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


# --- faults the real programs make ------------------------------------------------------------------

def test_a_save_that_hung_midway_is_passed_over(pod, gym):
    """accelerate's save_state hangs writing the optimizer of epoch 3 (after train_state.json and the
    weights): the run is stuck there, and resuming from that folder would fail in load_state."""
    g = gym()
    g.start(TRAIN_HANG_SAVING="3")
    first = g.wait_stalled(1)
    torn = g.run_dir / "my-lora-000003-state"
    assert sorted(p.name for p in torn.iterdir()) == ["model.safetensors", "train_state.json"]
    assert json.loads((torn / "train_state.json").read_text())["current_step"] == 6

    out = resume.resume(pod, first["pid"], grace=0.5)
    assert out.status == "changed", out.message
    assert out.checkpoint == str(g.run_dir / "my-lora-000002-state"), out.message
    assert "passed over my-lora-000003-state (incomplete: no optimizer.bin, random_states_0.pkl)" in out.message
    second = g.wait_stalled(2)  # it hangs again at its third save, epoch 5
    assert second["start_step"] == 4 and second["argv"][-2:] == ["--resume", out.checkpoint]


@pytest.mark.parametrize("how", ["variable", "cd"])
def test_the_output_folder_is_the_one_the_shell_passed(pod, gym, how):
    """`--output_dir="$OUT"`, or `cd` and a relative --output_dir: the running trainer's expanded argv and
    cwd say where the states are, not the script's text."""
    base = gym()  # for FluxGym's real script and its folder
    text = base.script.read_text()
    out = str(base.run_dir)
    if how == "variable":
        text = f'OUT="{out}"\n' + text.replace(f'--output_dir "{out}"', '--output_dir="$OUT"')
    else:
        text = (f'cd "{base.root}/outputs"\n' + text.replace(f'--output_dir "{out}"', f"--output_dir {base.name}")
                .replace("sd-scripts/flux_train_network.py", "../sd-scripts/flux_train_network.py"))
    assert text != base.script.read_text()
    base.script.write_text(text)
    base.start(TRAIN_STALL_AFTER="4")
    first = base.wait_stalled(1)
    out = resume.resume(pod, first["pid"], grace=0.5)
    assert out.status == "changed", out.message
    assert out.checkpoint == str(base.run_dir / "my-lora-000002-state"), out.message
    second = base.wait_stalled(2)
    assert second["start_step"] == 4
