"""memory.*: cgroup v1 read for real on this machine (and a real OOM kill in a capped cgroup), cgroup v2 from
recorded sample trees, VRAM judged on recorded NVML facts, thresholds by config."""
from __future__ import annotations

import doctest
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from podcheck.domain import cgroup, memory

DATA = Path(__file__).parent / "data"
SELECT = ["--select", "memory", "--select", "pod", "--select", "disk", "--json", "-"]
V1 = Path("/sys/fs/cgroup/memory")

# The kernel log is machine-wide: a real OOM kill made by one test is seen by every memory.oom
# check running at the same time, so these tests share one xdist worker.
pytestmark = pytest.mark.xdist_group("kernel-log")


def test_healthy_and_threshold_by_config(cpu_pod):
    run = cpu_pod.podcheck(*SELECT)
    assert run.status("memory.ram") == "passed", run.result("memory.ram")
    assert run.status("memory.vram") == "skipped" and run.status("memory.oom") in ("passed", "skipped")
    assert run.status("pod.workspace") == "passed"

    cpu_pod.configure(memory={"min_ram_available_gib": 100000})
    run = cpu_pod.podcheck(*SELECT)
    msg = run.result("memory.ram")["message"]
    assert run.status("memory.ram") == "failed"
    assert "RAM available, below [memory] min_ram_available_gib = 100000" in msg and run.result("memory.ram")["repair"] == "memory.free"
    assert run.status("pod.workspace") == "passed" and run.status("disk.workspace") == "passed"


def test_cgroup_v2_samples_through_the_cli(cpu_pod, tmp_path):
    tree = shutil.copytree(DATA / "cgroup-v2" / "limited", tmp_path / "cg")
    cpu_pod.configure(memory={"cgroup_root": str(tree)})
    run = cpu_pod.podcheck(*SELECT)
    msg = run.result("memory.ram")["message"]
    assert run.status("memory.ram") == "failed", msg
    assert "only 3.0 GiB RAM available" in msg and "used 13.0 GiB of 16.0 GiB (cgroup v2 /)" in msg
    oom = run.result("memory.oom")["message"]
    assert run.status("memory.oom") == "failed" and oom.startswith("2 OOM kill(s) since the last run (cgroup v2 / "
                                                                   "oom_kill counter). A process outgrew")
    assert run.status("pod.workspace") == "passed"
    run = cpu_pod.podcheck(*SELECT)
    assert run.status("memory.oom") == "passed", run.result("memory.oom")["message"]

    cpu_pod.configure(memory={"cgroup_root": str(DATA / "cgroup-v2" / "unlimited")})
    run = cpu_pod.podcheck(*SELECT)
    assert run.status("memory.ram") == "passed"
    assert "(host (/proc/meminfo; the cgroup sets no limit))" in run.result("memory.ram")["message"]


@pytest.fixture
def capped_cgroup():
    """A real v1 memory cgroup of our own, removed afterwards (root only)."""
    if os.geteuid() != 0 or not (V1 / "memory.limit_in_bytes").exists() or not os.access(V1, os.W_OK):
        pytest.skip("needs root and a writable cgroup v1 memory hierarchy")
    path = V1 / f"podcheck-test-{uuid.uuid4().hex[:12]}"
    path.mkdir()
    yield path
    for _ in range(50):
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.1)


def in_cgroup(group: Path, argv: list[str], **kw) -> subprocess.CompletedProcess:
    """Run argv inside `group` (the shell joins it, then execs)."""
    return subprocess.run(["sh", "-c", 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"', "sh", str(group), *argv],
                          **kw)


def test_real_oom_kill_in_a_capped_v1_cgroup(cpu_pod, capped_cgroup):
    (capped_cgroup / "memory.limit_in_bytes").write_text(str(64 << 20))
    victim = in_cgroup(capped_cgroup, [sys.executable, "-c", "x = bytearray(200 << 20)"])
    assert victim.returncode in (-9, 137), "the kernel OOM-kills a 200 MB allocation in 64 MB"
    assert "oom_kill 1" in (capped_cgroup / "memory.oom_control").read_text()

    (capped_cgroup / "memory.limit_in_bytes").write_text(str(1536 << 20))  # room for podcheck, not for 4 GiB free
    env = {**os.environ, "PODCHECK_CONFIG": str(cpu_pod.config_path)}
    done = in_cgroup(capped_cgroup, [sys.executable, "-m", "podcheck", *SELECT], capture_output=True, text=True,
                     env=env, cwd=cpu_pod.root, timeout=120)
    results = {r["id"]: r for r in json.loads(done.stdout)["results"]}
    name = capped_cgroup.name
    oom = results["memory.oom"]["message"]
    assert results["memory.oom"]["status"] == "failed", oom
    assert f"1 OOM kill(s) since the last run (cgroup v1 /{name} oom_kill counter and kernel log)" in oom
    assert "killed python" in oom and f"in cgroup /{name}" in oom
    ram = results["memory.ram"]["message"]
    assert results["memory.ram"]["status"] == "failed" and f"of 1.5 GiB (cgroup v1 /{name})" in ram
    assert results["pod.workspace"]["status"] == "passed" and results["disk.workspace"]["status"] == "passed"

    again = in_cgroup(capped_cgroup, [sys.executable, "-m", "podcheck", *SELECT], capture_output=True, text=True,
                      env=env, cwd=cpu_pod.root, timeout=120)
    results = {r["id"]: r for r in json.loads(again.stdout)["results"]}
    assert results["memory.oom"]["status"] == "passed", results["memory.oom"]


# --- pure parts ---------------------------------------------------------------------------------------

def test_cgroup_parsing_v1_and_v2():
    v1, v2 = cgroup.parse_proc_cgroup("4:memory:/process_api/f03e\n1:cpu:/\n0::/\n")
    assert (v1, v2) == ("/process_api/f03e", "/")
    assert cgroup.parse_proc_cgroup("0::/kubepods/pod1/c1\n") == (None, "/kubepods/pod1/c1")
    files = {f: (DATA / "cgroup-v2" / "limited" / f).read_text() for f in ("memory.max", "memory.current",
                                                                            "memory.stat", "memory.events")}
    cg = cgroup.from_files(2, "/", "/x", files)
    assert (cg.limit, cg.working_set, cg.available, cg.oom_kill) == (16 << 30, 13 << 30, 3 << 30, 2)
    cg = cgroup.from_files(1, "/a", "/x", {"memory.limit_in_bytes": "9223372036854771712\n",
                                           "memory.usage_in_bytes": "1000\n", "memory.stat": "total_inactive_file 400\n",
                                           "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n"})
    assert (cg.limit, cg.working_set, cg.oom_kill) == (None, 600, 3)
    assert cgroup.from_files(2, "/", "/x", {"memory.max": "max\n"}) is None, "memory.current missing"
    room = memory.ram_headroom(cg, {"MemTotal": 8 << 30, "MemAvailable": 5 << 30})
    assert room.available == 5 << 30 and room.source.startswith("host")


def test_oom_kill_lines_and_vram():
    text = (DATA / "dmesg-oom.txt").read_text()
    kills = memory.parse_oom_kills(text)
    assert [(k.pid, k.name, k.memcg) for k in kills] == [
        (15126, "python3", "/pc-probe-6922/c"), (12052, "python3", "/feas_oom"), (999, "main.py", None)]
    assert [k.pid for k in kills if memory.in_subtree(k.memcg, "/pc-probe-6922")] == [15126]
    assert len([k for k in kills if memory.in_subtree(k.memcg, "/")]) == 3
    h100 = json.loads((DATA / "nvml" / "h100.json").read_text())["nvml"]["gpus"]
    busy = [dict(h100[0], memory_free=1 << 30)]
    assert memory.low_vram(h100, 2 * memory.GIB) == []
    assert memory.low_vram(busy, 2 * memory.GIB) == busy


def test_module_examples():
    """The examples in the modules' docstrings hold."""
    for module in (memory,):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__
