"""disk.workspace: thresholds by config on the real filesystem, and a really full workspace (a small tmpfs)."""
from __future__ import annotations

import os
import subprocess

import pytest

SELECT = ["--select", "disk", "--select", "pod", "--select", "caches.local", "--json", "-"]


def test_healthy_and_threshold_by_config(cpu_pod):
    (cpu_pod.workspace / "models").mkdir()
    (cpu_pod.workspace / "models" / "flux.safetensors").write_bytes(b"\0" * (3 << 20))
    (cpu_pod.workspace / "output").mkdir()
    (cpu_pod.workspace / "output" / "a.png").write_bytes(b"\0" * (1 << 20))
    run = cpu_pod.podcheck(*SELECT)
    assert run.status("disk.workspace") == "passed" and "free of" in run.result("disk.workspace")["message"]

    cpu_pod.configure(disk={"min_free_gib": 1e9})
    run = cpu_pod.podcheck(*SELECT)
    msg = run.result("disk.workspace")["message"]
    assert run.status("disk.workspace") == "failed"
    assert f"workspace {cpu_pod.workspace} is nearly full" in msg and "below [disk] min_free_gib = 1e+09" in msg
    assert f"Largest folders: {cpu_pod.workspace}/models 3.0 MiB, {cpu_pod.workspace}/output 1.0 MiB" in msg
    assert run.status("pod.workspace") == "passed" and run.status("caches.local") == "passed"


@pytest.fixture
def small_workspace(cpu_pod):
    """The pod's workspace on a 4 MiB tmpfs with 64 inodes (root only); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,nr_inodes=64", "tmpfs", str(cpu_pod.workspace)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield cpu_pod
    subprocess.run(["umount", "-l", str(cpu_pod.workspace)], check=True)


def test_really_full_workspace(small_workspace):
    pod = small_workspace
    pod.configure(disk={"min_free_gib": 0.001, "min_free_inodes": 20})  # 1 MiB
    run = pod.podcheck(*SELECT)
    assert run.status("disk.workspace") == "passed", run.result("disk.workspace")

    out = pod.workspace / "output" / "alice"
    out.mkdir(parents=True)
    (out / "video.mp4").write_bytes(b"\0" * ((3 << 20) + (512 << 10)))
    for i in range(50):
        (out / f"frame{i:03}.png").write_bytes(b"")
    run = pod.podcheck(*SELECT)
    msg = run.result("disk.workspace")["message"]
    assert run.status("disk.workspace") == "failed", msg
    assert "free of 4.0 MiB (below [disk] min_free_gib = 0.001)" in msg
    assert "free inodes of 64 (below [disk] min_free_inodes = 20)" in msg
    assert f"Largest folders: {pod.workspace}/output" in msg
    assert run.status("pod.workspace") == "passed"
