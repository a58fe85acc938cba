"""`podcheck watch` with the real checks and repairs: a stuck training resumed, a repair that always
fails limited with visible backoff, a stop that does not cut a repair short."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from datetime import datetime
from pathlib import Path

import podsim
import pytest
import trainsim

from podcheck.domain import trainscript


def entries(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []



@pytest.fixture
def watching(tmp_path):
    """Start `podcheck watch` on a SimPod (env overrides allowed); stop it (SIGKILL if need be) at the end."""
    podchecks = podsim.Background(stdout=subprocess.DEVNULL)

    def start(sim: podsim.SimPod, *args: str, env: dict | None = None) -> subprocess.Popen:
        return podchecks(sim, "watch", *args, env=env)
    yield start
    podchecks.close()


@pytest.fixture
def sim(tmp_path, torch_python):
    pod = podsim.cpu_pod(tmp_path, torch_python)
    pod.configure(pod={"state_dir": str(tmp_path / "state")},
                  watch={"backoff_seconds": 0.3, "max_attempts_per_hour": 3})
    return pod


def test_watch_resumes_a_stuck_training_and_replaces_resume_on_the_next_stall(sim, watching):
    gym = trainsim.fluxgym(sim.workspace / "fluxgym")
    original = gym.script.read_text()
    # real accelerate launch takes 5-20 s to start a trainer on a loaded CI machine, and a relaunch
    # writes nothing until then: stuck_seconds must exceed that, or watch resumes a run still loading
    sim.configure(training={"stuck_seconds": 25, "kill_grace_seconds": 1.0},
                  watch={"repairs": ["training.resume"], "max_attempts_per_hour": 10})
    log = sim.state_dir / "watch.log"
    try:
        gym.start(TRAIN_STALL_AFTER="4")
        first = gym.wait_stalled(1)
        watching(sim, "--select", "training.progress", "--interval", "0.5")
        second = gym.wait_stalled(2, timeout=150)
        newest = str(gym.run_dir / "my-lora-000002-state")
        assert second["argv"][-2:] == ["--resume", newest] and second["fluxgym_env"] == "1"
        third = gym.wait_stalled(3, timeout=150)
        assert third["argv"].count("--resume") == 1 and third["start_step"] == 8
        assert trainscript.flag_value(gym.script.read_text(), "--resume") == str(gym.run_dir / "my-lora-000004-state")
        backups = sorted(gym.run_dir.glob("train.sh.bak-*"))
        assert len(backups) == 2 and backups[0].read_text() == original
        for old in (first, second):
            assert not Path(f"/proc/{old['pid']}").exists() or "Z" in Path(f"/proc/{old['pid']}/stat").read_text().split(")")[1][:3]
        podsim.wait_for(lambda: sum(e["event"] == "repair" and e["outcome"] == "changed" for e in entries(log)) >= 2)
        events = entries(log)
        failed = next(e for e in events if e["event"] == "check" and e["check"] == "training.progress")
        assert failed["result"] == "failed" and "looks stuck" in failed["message"] and failed["repair"] == "training.resume"
        resumed = [e for e in events if e["event"] == "repair" and e["outcome"] == "changed"]
        assert f"--resume {newest}" in resumed[0]["message"] and "my-lora-000004-state" in resumed[1]["message"]
        assert any(e["event"] == "recheck" and e["result"] == "passed" for e in events)
    finally:
        gym.cleanup()


def test_the_sync_loop_killed_is_back_within_one_interval(sim, watching, tmp_path):
    from podcheck.domain import syncloop_control

    drive = tmp_path / "drive"
    drive.mkdir()
    conf = tmp_path / "rclone.conf"
    conf.write_text(f"[gdrive]\ntype = alias\nremote = {drive}\n")
    conf.chmod(0o600)
    out = sim.workspace / "output" / "alice"
    out.mkdir(parents=True)
    (out / "alice-001.png").write_bytes(b"png" * 100)
    sim.configure(sync={"rclone_config": str(conf), "remote": "gdrive", "min_age": "0s"},
                  watch={"repairs": ["sync.start"]})
    pod = sim.live()
    log = sim.state_dir / "watch.log"
    interval = 2.0
    try:
        watching(sim, "--select", "sync.running", "--interval", str(interval))
        # No loop at first: watch starts it.
        podsim.wait_for(lambda: any(e["event"] == "recheck" and e["result"] == "passed" for e in entries(log)))
        first = syncloop_control.running_pid(pod)
        assert first and (drive / "ComfyUI-Output" / "output" / "alice" / "alice-001.png").exists()

        os.killpg(first, signal.SIGKILL)
        killed = time.monotonic()
        back = podsim.wait_for(lambda: (syncloop_control.running_pid(pod) or 0) not in (0, first) and syncloop_control.running_pid(pod),
                        timeout=interval + 10, step=0.05)
        took = time.monotonic() - killed
        assert took <= interval + 3.0, f"the loop came back after {took:.1f} s"  # a round, plus the repair itself
        podsim.wait_for(lambda: sum(e["event"] == "recheck" and e["result"] == "passed" for e in entries(log)) == 2)
        events = entries(log)
        dead = [e for e in events if e["event"] == "check" and e["result"] == "failed"]
        assert dead and f"the sync loop (pid {first}) is dead" in dead[-1]["message"]
        started = [e for e in events if e["event"] == "repair" and e["repair"] == "sync.start"]
        assert len(started) == 2 and started[-1]["outcome"] == "changed" and str(back) in started[-1]["message"]
        assert events[-1]["event"] == "recheck" and events[-1]["message"] == "repaired by sync.start"
    finally:
        syncloop_control.stop(pod, timeout=3)


def test_a_repair_that_always_fails_is_attempted_no_more_than_the_limit(sim, watching, tmp_path):
    sim.configure(fix={"ffmpeg_install": ["false"]}, watch={"repairs": ["ffmpeg"]})
    log = sim.state_dir / "watch.log"
    watching(sim, "--select", "system.ffmpeg", "--interval", "0.2",
             env={"PATH": podsim.path_without("ffmpeg", root=tmp_path)})
    podsim.wait_for(lambda: any(e["event"] == "give_up" for e in entries(log)))
    time.sleep(1.0)  # still watching: no further attempt
    repairs = [e for e in entries(log) if e["event"] == "repair"]
    assert [r["attempt"] for r in repairs] == [1, 2, 3] and {r["outcome"] for r in repairs} == {"failed"}
    assert "`false` failed" in repairs[0]["message"]
    assert [r["wait_s"] for r in repairs] == [0.3, 0.6, 1.2]
    gaps = [datetime.fromisoformat(b["time"]).timestamp() - datetime.fromisoformat(a["time"]).timestamp()
            for a, b in zip(repairs, repairs[1:])]
    assert gaps[1] >= gaps[0] - 1.0  # second-resolution timestamps; wait_s is the exact pause
    give_up = next(e for e in entries(log) if e["event"] == "give_up")
    assert give_up["message"].startswith(f"giving up on system.ffmpeg until {give_up['until']}")


def test_stopping_during_a_repair_lets_it_finish(sim, watching, tmp_path):
    marker = tmp_path / "repair-finished"
    sim.configure(fix={"ffmpeg_install": ["sh", "-c", f"sleep 2; touch {marker}"]}, watch={"repairs": ["ffmpeg"]})
    log = sim.state_dir / "watch.log"
    w = watching(sim, "--select", "system.ffmpeg", "--interval", "0.2",
                 env={"PATH": podsim.path_without("ffmpeg", root=tmp_path)})
    podsim.wait_for(lambda: any(e["event"] == "check" for e in entries(log)))
    time.sleep(0.5)  # the repair process is under way
    started = time.monotonic()
    w.send_signal(signal.SIGTERM)
    w.wait(5)
    assert time.monotonic() - started < 2.0 and w.returncode == 0
    stop = entries(log)[-1]
    assert stop["event"] == "stop" and stop["repair_running"] and not marker.exists()
    finished = podsim.wait_for(lambda: [e for e in entries(log) if e.get("after_stop")], timeout=15)
    assert marker.exists() and finished[0]["repair"] == "ffmpeg" and finished[0]["check"] == ["system.ffmpeg"]
