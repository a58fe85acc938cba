"""Fleet `--fix` over simulated pods behind real sshd: rolling with --max-parallel, --max-fail
stops starting pods, and two pods sharing one volume never repair it at the same time."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading

import fleetsim
import podsim
import pytest
import testinfra

from podcheck import config as config_mod
from podcheck.domain import users
from podcheck.fix.lock import VolumeLock
from podcheck.host.pod import Pod

pytestmark = [pytest.mark.ssh, pytest.mark.xdist_group("fleet")]

NAMES = [f"fix-{c}" for c in "abcdefgh"]


@pytest.fixture
def fleet(tmp_path):
    try:
        sim = fleetsim.start(NAMES)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield sim
    sim.stop()


def test_rolling_fix_with_limits_and_one_lock_per_volume(fleet, tmp_path):
    """a+b share a volume, c/f/g have their own, d/e have a user name no folder can have (their
    repair fails), h is healthy. --max-parallel 2 --max-fail 1, while the test holds a+b's lock."""
    shared = tmp_path / "shared"
    text = podsim.toml_dumps({"pod": {"gpu": "absent", "user": "alice", "command_timeout": 30.0},
                              "fix": {"lock_wait_seconds": 120.0}})
    for name in NAMES:
        ws = shared if name in ("fix-a", "fix-b") else tmp_path / name
        ws.mkdir(exist_ok=True)
        own = {"workspace": str(ws)}
        if name in ("fix-d", "fix-e"):
            own["users"] = ["alice", "bad/name"]
        text += podsim.toml_dumps({f'hosts."{name}".pod': own})
    for kind in users.PER_USER:
        (tmp_path / "fix-h" / kind / "alice").mkdir(parents=True, exist_ok=True)
    (tmp_path / "podcheck.toml").write_text(text)
    env = {**os.environ, "PODCHECK_CONFIG": str(tmp_path / "podcheck.toml")}
    env.pop("PODCHECK_WORKSPACE", None)

    holder_cfg = config_mod.load(tmp_path / "podcheck.toml", env={}, host=["fix-a"])
    lock = VolumeLock(Pod(holder_cfg, testinfra.get_host("local://")), what="the test, holding fix-a+b's volume")
    release = threading.Event()
    held = threading.Event()

    def hold():
        with lock.held(10):
            held.set()
            release.wait(120)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(20)
    proc = subprocess.Popen([sys.executable, "-m", "podcheck", "--fix", "--hosts", "ssh://fix-*", "--ssh-config",
                             str(fleet.ssh_config), "--select", "pod,isolation", "--max-parallel", "2",
                             "--max-fail", "1", "--json", str(tmp_path / "fix.json")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    lines = []
    try:
        for line in proc.stderr:
            lines.append(line.rstrip())
            if sum(ln.endswith(": repairing") for ln in lines if ln.startswith(("fix-a", "fix-b"))) == 2:
                break
        threading.Timer(2.0, release.set).start()  # both a and b wait on the test's lock for ~2 s
        out, err = proc.communicate(timeout=300)
        lines += err.splitlines()
    finally:
        release.set()
        holder.join(30)
        podsim.stop(proc)
    assert proc.returncode == 1, "\n".join(lines)
    doc = json.loads((tmp_path / "fix.json").read_text())
    reports = {r["host"].removeprefix("ssh://"): r for r in doc["reports"]}
    changed = {name: [r["id"] for r in rep["repairs"] if r["status"] == "changed"] for name, rep in reports.items()}
    # one lock per volume: exactly one of the pods sharing it repaired it; the other looked again after waiting
    assert sorted(changed["fix-a"] + changed["fix-b"]) == ["isolation.user_dirs"], reports
    assert reports["fix-a"]["summary"]["failed"] == reports["fix-b"]["summary"]["failed"] == 0
    assert changed["fix-c"] == ["isolation.user_dirs"]
    assert (tmp_path / "fix-c" / "workflows" / "alice").is_dir()
    # --max-fail 1: d did not end healthy (its bad user name needs a rename by hand; alice got her
    # folders), so f and g were never started
    still = [r for r in reports["fix-d"]["results"] if r["status"] == "failed"]
    assert [r["id"] for r in still] == ["isolation.user_dirs"] and "bad/name" in still[0]["message"], reports["fix-d"]
    assert any("bad/name" in r["message"] for r in reports["fix-d"]["repairs"]), reports["fix-d"]["repairs"]
    for name in ("fix-f", "fix-g"):
        assert reports[name]["repairs"] == [{"id": "fleet", "status": "skipped", "message": "not started: --max-fail 1 reached",
                                             "commands": [], "duration_s": 0.0}]
        assert not (tmp_path / name / "output" / "alice").exists()
    assert reports["fix-h"]["repairs"] == [] and reports["fix-h"]["summary"]["failed"] == 0
    # the summary says per pod what changed
    assert any(ln.startswith("fix-c: changed isolation.user_dirs;") and ln.endswith("now healthy") for ln in lines), lines
    assert "repairs:" in out and "fix-f: not started: --max-fail 1 reached" in out, out
    assert fleetsim.ssh_processes("pcmux-") == []
