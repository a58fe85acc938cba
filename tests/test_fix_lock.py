"""The cross-pod fix lock, with real processes: waiting and saying for whom, takeover of a dead holder
(and killing what it left running), of an expired lease, the bounded wait, and mutual exclusion when
several waiters race for one stale lock."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest
import testinfra

from podcheck import config
from podcheck.fix.lock import LockBusy, LockError, VolumeLock
from podcheck.host.pod import Pod

HOLDER = textwrap.dedent("""
    import json, os, subprocess, sys, time, testinfra
    from podcheck import config
    from podcheck.fix.lock import VolumeLock
    from podcheck.host.pod import Pod
    from podcheck.fix.repair import TOKEN_ENV
    ws, hold, log, lease = sys.argv[1], float(sys.argv[2]), sys.argv[3], float(sys.argv[4])
    pod = Pod(config.load(env={"PODCHECK_WORKSPACE": ws, "HOME": ws}), testinfra.get_host("local://"))
    lock = VolumeLock(pod, lease=lease, poll=0.05)
    assert lock.acquire(wait=60)
    began = time.time()
    child = subprocess.Popen(["sleep", "300"], env={**os.environ, TOKEN_ENV: lock.token})
    print(json.dumps({"pid": os.getpid(), "child": child.pid, "token": lock.token}), flush=True)
    time.sleep(hold)
    child.kill(); child.wait()
    end = time.time()
    lock.release()
    with open(log, "a") as fh:
        fh.write(f"{began} {end}\\n")
""")


def local_pod(workspace: Path, lease: float = 120.0) -> Pod:
    cfg = config.load(env={"PODCHECK_WORKSPACE": str(workspace), "HOME": str(workspace)})
    cfg.fix.lock_lease_seconds = lease
    return Pod(cfg, testinfra.get_host("local://"))


def start_holder(workspace: Path, hold: float, lease: float = 120.0) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(workspace), str(hold),
                             str(workspace / "intervals.log"), str(lease)], stdout=subprocess.PIPE, text=True)
    info = json.loads(proc.stdout.readline())
    return proc, info


def plant(workspace: Path, **fields) -> Path:
    path = workspace / ".podcheck" / "fix.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"token": "f" * 32, "host": "other-pod", "pid": 4242, "pid_started": 1.0, "started": time.time() - 60,
              "heartbeat": time.time(), "lease_s": 120.0, "what": "podcheck --fix", "target": "local"}
    path.write_text(json.dumps({**record, **fields}, sort_keys=True))
    return path


@pytest.fixture
def workspace(tmp_path):
    ws = tmp_path / "workspace"
    ws.mkdir()
    return ws


def test_second_fixer_waits_and_says_for_whom(workspace):
    holder, info = start_holder(workspace, hold=1.5)
    try:
        told = []
        lock = VolumeLock(local_pod(workspace), poll=0.05)
        began = time.monotonic()
        assert lock.acquire(wait=30, on_wait=told.append)
        waited = time.monotonic() - began
        lock.release()
    finally:
        holder.wait(10)
    assert lock.waited and lock.took_over is None and waited > 0.8
    assert len(told) == 1 and told[0]["pid"] == info["pid"] and told[0]["host"] == os.uname().nodename
    assert not (workspace / ".podcheck" / "fix.lock").exists()


def test_dead_holder_is_taken_over_and_what_it_left_running_is_killed(workspace):
    holder, info = start_holder(workspace, hold=300)
    orphan = psutil.Process(info["child"])
    holder.send_signal(signal.SIGKILL)
    holder.wait(5)
    assert orphan.is_running() and orphan.status() != psutil.STATUS_ZOMBIE  # pip, git... would still run
    lock = VolumeLock(local_pod(workspace), poll=0.05)
    began = time.monotonic()
    assert lock.acquire(wait=30)
    assert time.monotonic() - began < 3, "a dead holder on this machine needs no lease to expire"
    assert lock.took_over and f"pid {info['pid']}" in lock.took_over and "is gone" in lock.took_over
    try:
        orphan.wait(5)
    except psutil.TimeoutExpired:
        pytest.fail("the dead fixer's tagged command still runs")
    assert json.loads((workspace / ".podcheck" / "fix.lock").read_text())["token"] == lock.token
    lock.release()


def test_expired_lease_of_another_pod_is_taken_over(workspace):
    plant(workspace, heartbeat=time.time() - 500)
    lock = VolumeLock(local_pod(workspace), poll=0.05)
    assert lock.acquire(wait=5)
    assert "other-pod sent no heartbeat for 500 s (lease 120 s)" in lock.took_over
    lock.release()


def test_a_live_holder_on_another_pod_bounds_the_wait(workspace):
    planted = plant(workspace)
    lock = VolumeLock(local_pod(workspace), poll=0.05)
    with pytest.raises(LockBusy) as busy:
        with lock.held(wait=0.5):
            pytest.fail("took a live lock")
    assert "pid 4242 on other-pod" in str(busy.value) and "after 0.5 s; nothing was repaired" in str(busy.value)
    assert json.loads(planted.read_text())["host"] == "other-pod"  # untouched


def test_the_holder_keeps_its_heartbeat_fresh(workspace):
    pod = local_pod(workspace)
    lock = VolumeLock(pod, lease=0.8, poll=0.05)
    assert lock.acquire(wait=1)
    first = lock.holder()["heartbeat"]
    time.sleep(0.7)
    later = lock.holder()
    lock.release()
    assert later["token"] == lock.token and later["heartbeat"] > first
    assert lock.holder() is None


def test_waiters_racing_for_one_stale_lock_never_hold_it_together(workspace):
    plant(workspace, heartbeat=time.time() - 900)
    procs = [subprocess.Popen([sys.executable, "-c", HOLDER, str(workspace), "0.3", str(workspace / "intervals.log"),
                               "120"], stdout=subprocess.DEVNULL) for _ in range(6)]
    for p in procs:
        assert p.wait(60) == 0
    spans = sorted(tuple(map(float, line.split())) for line in (workspace / "intervals.log").read_text().splitlines())
    assert len(spans) == 6
    for (_, end), (begin, _) in zip(spans, spans[1:]):
        assert begin >= end, f"two holders at once: {spans}"


def test_a_lock_that_cannot_be_created_is_an_error_not_a_hang(workspace):
    (workspace / ".podcheck").write_text("a file where the state folder belongs")
    lock = VolumeLock(local_pod(workspace), poll=0.05)
    began = time.monotonic()
    with pytest.raises(LockError, match=r"cannot create .*/\.podcheck/fix\.lock"):
        lock.acquire(wait=30)
    assert time.monotonic() - began < 5
