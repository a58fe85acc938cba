"""podcheck watch: attempts and backoff, watch.log, one watch per pod, clean stops on signals."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest

import podsim
from podcheck import config as config_mod
from podcheck.services import watch
from podcheck.results import RepairResult


# --- the limiter, on a clock we choose --------------------------------------------------------------

def test_attempts_back_off_then_give_up_for_the_hour():
    lim = watch.Limiter(per_hour=3, backoff=60)
    t = 1000.0
    assert lim.verdict("sync.running", t) == ("go", t)
    assert lim.attempted("sync.running", t) == t + 60
    assert lim.verdict("sync.running", t + 59) == ("wait", t + 60)
    assert lim.attempted("sync.running", t + 60) == t + 60 + 120          # the pause doubles
    assert lim.attempted("sync.running", t + 180) == t + 180 + 240
    assert lim.verdict("sync.running", t + 500) == ("give_up", t + 3600)  # 3 in the last hour
    assert lim.first_give_up("sync.running", t + 3600) and not lim.first_give_up("sync.running", t + 3600)
    assert lim.verdict("sync.running", t + 3600) == ("go", t + 3600)      # the first one left the window
    assert lim.verdict("memory.ram", t + 500) == ("go", t + 500)          # per check
    lim.passed("sync.running")                                            # passing resets the pause...
    assert lim.attempted("sync.running", t + 3700) == t + 3760
    assert lim.count("sync.running", t + 3700) == 2                       # ...not the hourly count


# --- the loop, in this process, on a real check with a real fault -----------------------------------

@pytest.fixture
def sim(tmp_path, torch_python):
    pod = podsim.cpu_pod(tmp_path, torch_python)
    pod.configure(pod={"state_dir": str(tmp_path / "state")})
    return pod


def entries(path: Path) -> list[dict]:
    return [json.loads(ln) for ln in path.read_text().splitlines()] if path.exists() else []


class Repairs(watch.Engine):
    """Checks as `podcheck watch` runs them; repairs done here by `action` instead of a child process."""

    def __init__(self, cfg, settings, action):
        super().__init__(cfg, settings)
        self.action, self.calls = action, []

    def repair(self, repair_id, checks, stopping):
        self.calls.append(repair_id)
        return self.action()


def make_watch(sim, action, **over):
    cfg = config_mod.load(sim.config_path, env={})
    settings = watch.Settings.from_config(cfg, interval=0.1, select=["system.ffmpeg"])
    settings.repairs = {"ffmpeg"}
    for key, value in over.items():
        setattr(settings, key, value)
    engine = Repairs(cfg, settings, action)
    return watch.Watch(cfg, settings, engine=engine), engine, settings.log


def test_a_failed_check_is_repaired_and_rechecked(sim, tmp_path, monkeypatch):
    healthy_path = os.environ["PATH"]
    monkeypatch.setenv("PATH", podsim.path_without("ffmpeg", root=tmp_path))

    def put_ffmpeg_back():
        os.environ["PATH"] = healthy_path
        return RepairResult("ffmpeg", "changed", "ffmpeg is on PATH again")

    w, engine, log = make_watch(sim, put_ffmpeg_back)
    w.cycle()
    w.cycle()  # passing now: nothing more to do
    assert engine.calls == ["ffmpeg"]
    events = [(e["event"], e.get("result") or e.get("outcome")) for e in entries(log)]
    assert events == [("check", "failed"), ("repair", "changed"), ("recheck", "passed")]
    failed, repaired, rechecked = entries(log)
    assert "ffmpeg not found on PATH" in failed["message"] and failed["repair"] == "ffmpeg"
    assert repaired["check"] == ["system.ffmpeg"] and repaired["attempt"] == 1
    assert rechecked["message"] == "repaired by ffmpeg"
    assert all(e["host"] and datetime.fromisoformat(e["time"]) for e in entries(log))


def test_a_repair_that_always_fails_is_limited_with_growing_backoff(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", podsim.path_without("ffmpeg", root=tmp_path))
    w, engine, log = make_watch(sim, lambda: RepairResult("ffmpeg", "failed", "apt-get: no network"),
                                max_attempts=3, backoff=0.3)
    deadline = time.monotonic() + 30
    while not any(e["event"] == "give_up" for e in entries(log)) and time.monotonic() < deadline:
        w.cycle()
        time.sleep(0.05)
    for _ in range(3):  # still watching, no more attempts
        w.cycle()
    repairs = [e for e in entries(log) if e["event"] == "repair"]
    assert engine.calls == ["ffmpeg"] * 3 and [r["attempt"] for r in repairs] == [1, 2, 3]
    assert [r["wait_s"] for r in repairs] == [0.3, 0.6, 1.2]
    starts = [datetime.fromisoformat(r["time"]).timestamp() for r in repairs]
    give_up = [e for e in entries(log) if e["event"] == "give_up"]
    assert len(give_up) == 1
    until = datetime.fromisoformat(give_up[0]["until"]).timestamp()
    assert abs(until - (starts[0] + 3600)) <= 1.5
    assert give_up[0]["message"].startswith(f"giving up on system.ffmpeg until {give_up[0]['until']}")
    assert [e["event"] for e in entries(log)].count("check") == 1  # a failure is logged once, not every round
    assert sum(e["event"] == "recheck" and e["result"] == "failed" for e in entries(log)) == 3


class Scripted(watch.Engine):
    """Check results given as data, round by round (the loop's decisions on their own)."""

    def __init__(self, cfg, settings, rounds, launched=False):
        super().__init__(cfg, settings)
        self.rounds, self.launched, self.calls = list(rounds), launched, []

    def check(self, select):  # every run, re-checks included, takes the next status
        from podcheck.results import CheckResult, Report
        status = self.rounds.pop(0)
        return Report("local", "runtime", results=[CheckResult("comfyui.running", "comfyui", status,
                                                               repair="comfyui.launch")])

    def repair(self, repair_id, checks, stopping):
        self.calls.append(repair_id)
        return RepairResult(repair_id, "changed", "launched ComfyUI")

    def started_before(self, repair_id):
        return self.launched


@pytest.mark.parametrize("rounds, launched, attempts", [
    (["failed", "failed"], False, 0),            # never ran: watch does not start it
    (["failed", "passed"], True, 1),             # podcheck launched it before: it died
    (["passed", "failed", "passed"], False, 1),  # this watch saw it run: it died
])
def test_a_service_is_restarted_only_when_it_ran_before(sim, rounds, launched, attempts):
    cfg = config_mod.load(sim.config_path, env={})
    settings = watch.Settings.from_config(cfg, interval=1, select=["comfyui.running", "pod"])
    settings.repairs = {"comfyui.launch"}
    engine = Scripted(cfg, settings, rounds, launched)
    w = watch.Watch(cfg, settings, engine=engine)
    while engine.rounds:
        w.cycle()
    assert engine.calls == ["comfyui.launch"] * attempts
    skips = [e for e in entries(settings.log) if e["event"] == "skip"]
    assert len(skips) == (1 if attempts == 0 else 0)
    if skips:
        assert "was not running before" in skips[0]["message"]


def test_a_broken_round_is_logged_and_the_watch_goes_on(sim, capsys):
    from podcheck.results import Report

    cfg = config_mod.load(sim.config_path, env={})
    settings = watch.Settings.from_config(cfg, interval=0.05, select=["pod"])

    class Flaky(watch.Engine):
        calls = 0

        def check(self, select):
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("disk on fire")
            w.stopping = True  # the second round ends the watch
            return Report("local", "runtime")

    w = watch.Watch(cfg, settings, engine=Flaky(cfg, settings))
    assert w.run() == 0
    assert [e["event"] for e in entries(settings.log)] == ["start", "error", "stop"]
    assert entries(settings.log)[1]["message"] == "round failed: RuntimeError: disk on fire"
    assert "round failed: RuntimeError: disk on fire" in capsys.readouterr().err


# --- the command: one per pod, signals --------------------------------------------------------------

def start_watch(sim, *args) -> subprocess.Popen:
    env = {**os.environ, "PODCHECK_CONFIG": str(sim.config_path)}
    return subprocess.Popen([sys.executable, "-m", "podcheck", "watch", *args], env=env, cwd=sim.root,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)



@pytest.fixture
def procs():
    started = []
    yield started
    for p in started:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_one_watch_per_pod_and_sigterm_stops_it_within_two_seconds(sim, procs):
    log = sim.root / "state" / "watch.log"
    first = start_watch(sim, "--select", "pod.workspace", "--interval", "0.3")
    procs.append(first)
    podsim.wait_for(lambda: any(e["event"] == "start" for e in entries(log)))

    second = start_watch(sim, "--select", "pod.workspace")
    procs.append(second)
    out, err = second.communicate(timeout=30)
    assert second.returncode == 2
    assert err.startswith("podcheck: error: podcheck watch already runs on this pod")
    assert f"pid {first.pid}" in err and len(err.strip().splitlines()) == 1

    time.sleep(0.5)  # let it run a few rounds
    started = time.monotonic()
    first.send_signal(signal.SIGTERM)
    first.wait(timeout=5)
    assert time.monotonic() - started < 2.0 and first.returncode == 0
    last = entries(log)[-1]
    assert last["event"] == "stop" and last["signal"] == "SIGTERM"
    assert [e["event"] for e in entries(log)].count("start") == 1

    again = start_watch(sim, "--select", "pod.workspace", "--interval", "5")  # the lock went with the process
    procs.append(again)
    podsim.wait_for(lambda: [e["event"] for e in entries(log)].count("start") == 2)
    again.send_signal(signal.SIGINT)
    again.wait(timeout=5)
    assert again.returncode == 0 and entries(log)[-1]["signal"] == "SIGINT"


def test_sigterm_during_a_hung_check_run(sim, tmp_path, procs):
    pids = tmp_path / "probe.pid"
    hung = podsim.fake_python(tmp_path / "hung" / "python", f'echo $$ >> {pids}; exec sleep 30')
    sim.configure(pod={"python": str(hung), "probe_timeout": 30.0})
    log = sim.root / "state" / "watch.log"
    w = start_watch(sim, "--select", "gpu.torch_build", "--interval", "1")
    procs.append(w)
    try:
        podsim.wait_for(lambda: pids.exists())  # the check run is now waiting on the probe
        started = time.monotonic()
        w.send_signal(signal.SIGTERM)
        w.wait(timeout=5)
        assert time.monotonic() - started < 2.0 and w.returncode == 0
        assert entries(log)[-1]["event"] == "stop"
    finally:
        for pid in pids.read_text().split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_bad_interval_is_one_line(sim):
    run = sim.podcheck("watch", "--interval", "0")
    assert run.rc == 2 and run.stderr.strip() == "podcheck: error: the watch interval must be more than 0 s, got 0"


def test_watch_log_is_redacted(sim, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "plain-looking-secret-value-42")
    cfg = config_mod.load(sim.config_path, env={})
    log = watch.Log(tmp_path / "w.log", watch.redactor_for(cfg))
    log.write("repair", repair="sync.start", message="rclone saw plain-looking-secret-value-42 and "
                                                        "https://me:pw123456@host/x")
    text = (tmp_path / "w.log").read_text()
    assert "plain-looking-secret-value-42" not in text and "pw123456" not in text and "sync.start" in text
