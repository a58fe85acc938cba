"""caches.*: cache locations and staleness on real files (planted in a temp $HOME and workspace), the GPU
judged from recorded NVML facts (tests/data/nvml/, no GPU here), caches.local through the real CLI."""
from __future__ import annotations

import doctest
import json
import os
import time
from pathlib import Path

import pytest


from podcheck.domain import caches

DATA = Path(__file__).parent / "data" / "nvml"
SELECT = ["--select", "caches", "--select", "pod", "--select", "disk", "--json", "-"]


def gpus(card: str) -> list[dict]:
    return json.loads((DATA / f"{card}.json").read_text())["nvml"]["gpus"]


def plant(path: Path, size: int, age: float = 0.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\0" * size)
    if age:
        t = time.time() - age
        os.utime(path, (t, t))
    return path


@pytest.fixture
def gpu_pod(cpu_pod, tmp_path):
    """A pod with a temp $HOME and users alice and bob (the GPU comes from recorded facts)."""
    home = tmp_path / "home"
    home.mkdir()
    for user in ("alice", "bob"):
        (cpu_pod.workspace / "output" / user).mkdir(parents=True)
    cpu_pod.home = home
    cpu_pod.env_vars = {"HOME": str(home), "USER": "tester", "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    return cpu_pod


def test_gpu_change_lists_caches_of_the_old_gpu_until_they_are_gone(gpu_pod, tmp_path):
    pod, env, home, ws = gpu_pod.live(), gpu_pod.env_vars, gpu_pod.home, gpu_pod.workspace
    t0 = time.time() - 1000
    ok, msg = caches.judge_gpu_change(pod, gpus("rtx4090"), env, t0)
    assert ok and msg.startswith("GPU NVIDIA GeForce RTX 4090:8.9 (fingerprint recorded")

    # caches built while the 4090 was in this pod's place
    old = [plant(home / ".triton/cache/ab12/cuda_utils.so", 3000, age=500),
           plant(home / ".nv/ComputeCache/0/1/blob", 2048, age=500),
           plant(ws / ".cache/torch_extensions/py311_cu129/sage/sage.so", 5000, age=500),
           plant(tmp_path / "inductor/triton/0/k.cubin", 100, age=500),
           plant(ws / "output/alice/tensorrt/ComfyUI_STAT_$stat-b-1-h-1024-w-1024_00001_.engine", 7000, age=500)]
    fresh = plant(home / ".cache/torch/kernels/new.cubin", 64, age=0)
    later = t0 + 990  # the 5090 shows up 10 s ago
    ok, msg = caches.judge_gpu_change(pod, gpus("rtx5090"), env, later)
    assert not ok
    assert "the GPU changed from NVIDIA GeForce RTX 4090:8.9 to NVIDIA GeForce RTX 5090:12.0" in msg
    assert f"Triton {home}/.triton/cache 2.9 KiB in 1 files" in msg
    assert f"CUDA ComputeCache {home}/.nv/ComputeCache 2.0 KiB in 1 files" in msg
    assert f"torch extensions {ws}/.cache/torch_extensions 4.9 KiB in 1 files" in msg
    assert f"TorchInductor {tmp_path}/inductor (TORCHINDUCTOR_CACHE_DIR) 100 B" in msg
    assert f"TensorRT engines {ws}/output/alice/tensorrt 6.8 KiB" in msg
    assert "torch kernels" not in msg, f"{fresh} was written after the change"
    assert "clear them" in msg

    status, msg = caches.judge_tensorrt(pod, gpus("rtx5090"), env, later + 1)
    assert status == "failed" and "1 TensorRT engine(s) were built on another GPU" in msg
    assert "built on NVIDIA GeForce RTX 4090:8.9" in msg and "expecting compute X got compute Y" in msg

    for path in old:  # what caches.clear does
        path.unlink()
    ok, msg = caches.judge_gpu_change(pod, gpus("rtx5090"), env, later + 2)
    assert ok and msg.endswith("no cache built for another GPU is left"), msg
    status, msg = caches.judge_tensorrt(pod, gpus("rtx5090"), env, later + 2)
    assert status == "skipped" and msg.startswith("no TensorRT engines")

    plant(ws / "ComfyUI/models/tensorrt/rebuilt.engine", 10)  # built on the 5090
    status, msg = caches.judge_tensorrt(pod, gpus("rtx5090"), env, later + 3)
    assert status == "passed" and "1 TensorRT engine(s), none older than the last GPU change" in msg
    history = json.loads((gpu_pod.state_dir / "gpu-history.json").read_text())["entries"]
    assert [e["fingerprint"] for e in history] == ["NVIDIA GeForce RTX 4090:8.9", "NVIDIA GeForce RTX 5090:12.0"]


def test_legacy_last_gpu_info_seeds_the_history(gpu_pod):
    pod, env, home, ws = gpu_pod.live(), gpu_pod.env_vars, gpu_pod.home, gpu_pod.workspace
    (ws / ".last_gpu_info").write_text("NVIDIA GeForce RTX 4090:89\n")
    plant(home / ".triton/cache/x/kernel.cubin", 1024, age=60)
    ok, msg = caches.judge_gpu_change(pod, gpus("rtx5090"), env, time.time())
    assert not ok, msg
    assert "from NVIDIA GeForce RTX 4090:8.9 to NVIDIA GeForce RTX 5090:12.0" in msg
    assert f"Triton {home}/.triton/cache 1.0 KiB in 1 files" in msg

    other = gpu_pod.root / "second"
    (other / "workspace").mkdir(parents=True)
    (other / "workspace" / ".last_gpu_info").write_text("NVIDIA GeForce RTX 5090:12.0")
    gpu_pod.configure(pod={"workspace": str(other / "workspace")})
    ok, msg = caches.judge_gpu_change(gpu_pod.live(), gpus("rtx5090"), env, time.time())
    assert ok and "fingerprint recorded" in msg, "the legacy file names this GPU: nothing changed"


def test_caches_local_through_the_cli(gpu_pod, tmp_path):
    local = {"TRITON_CACHE_DIR": str(tmp_path / "triton"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "inductor")}
    run = gpu_pod.podcheck(*SELECT, env={**gpu_pod.env_vars, **local})
    assert run.statuses() == {"caches.gpu_unchanged": "skipped", "caches.local": "passed", "caches.tensorrt": "skipped",
                              "gpu.driver": "skipped", "pod.workspace": "passed", "disk.workspace": "passed"}
    assert f"Triton {tmp_path}/triton (TRITON_CACHE_DIR) on ext2/ext3" in run.result("caches.local")["message"]

    ws = gpu_pod.workspace
    (gpu_pod.home / ".triton").symlink_to(ws / ".triton")  # ~/.triton on the volume, through a link
    run = gpu_pod.podcheck(*SELECT, env={**gpu_pod.env_vars, "TORCHINDUCTOR_CACHE_DIR": str(ws / "inductor")})
    msg = run.result("caches.local")["message"]
    assert run.status("caches.local") == "failed"
    assert f"Triton {gpu_pod.home}/.triton/cache -> {ws}/.triton/cache is on the shared volume {ws}" in msg
    assert f"TorchInductor {ws}/inductor (TORCHINDUCTOR_CACHE_DIR) is on the shared volume" in msg
    assert "point TRITON_CACHE_DIR at local disk" in msg and run.result("caches.local")["repair"] == "comfyui.relaunch"
    assert run.status("pod.workspace") == "passed" and run.status("disk.workspace") == "passed"
    assert run.status("caches.gpu_unchanged") == "skipped"


# --- pure parts ---------------------------------------------------------------------------------------

def test_locations_honour_the_cache_variables():
    env = {"HOME": "/home/u", "XDG_CACHE_HOME": "/xdg", "TRITON_CACHE_DIR": "/t", "CUDA_CACHE_PATH": "/c",
           "LOGNAME": "a:b"}
    found = {(loc.kind, loc.path, loc.source) for loc in caches.locations(env, "/w", "/w/ComfyUI", ["al", "../x"])}
    assert ("triton", "/t", "TRITON_CACHE_DIR") in found
    assert ("cuda", "/c", "CUDA_CACHE_PATH") in found
    assert ("inductor", "/tmp/torchinductor_a_b", "default") in found
    assert ("torch_extensions", "/xdg/torch_extensions", "default") in found
    assert ("torch_kernels", "/xdg/torch/kernels", "default") in found
    assert ("triton", "/w/.triton/cache", "workspace") in found
    assert ("tensorrt", "/w/output/al/tensorrt", "workspace") in found
    assert not any("../x" in path for _, path, _ in found), "invalid user names never become paths"
    default = {(loc.kind, loc.path) for loc in caches.effective({"HOME": "/root", "TRITON_HOME": "/th"})}
    assert ("triton", "/th/.triton/cache") in default and ("cuda", "/root/.nv/ComputeCache") in default


def test_fingerprints_and_history():
    two = gpus("h100") + [dict(gpus("rtx4090")[0], index=1)]
    assert caches.fingerprint(two) == "NVIDIA GeForce RTX 4090:8.9; NVIDIA H100 80GB HBM3:9.0"
    assert caches.parse_legacy("NVIDIA  H100 80GB HBM3:9.0") == "NVIDIA H100 80GB HBM3:9.0"
    assert caches.parse_legacy("garbage") is None and caches.parse_legacy("X:abc") is None
    h = caches.History()
    assert not h.observe("A", 100) and not h.observe("A", 150)
    assert h.observe("B", 200) and h.observe("A", 300)
    assert [h.fingerprint_at(t) for t in (50, 120, 250, 350)] == ["A", "A", "B", "A"]
    assert h.built_elsewhere(250) and not h.built_elsewhere(120) and not h.built_elsewhere(301)
    assert caches.is_network_fs("nfs") and caches.is_network_fs("fuseblk") and not caches.is_network_fs("ext2/ext3")


def test_module_examples():
    """The examples in the modules' docstrings hold."""
    for module in (caches,):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__


def test_caches_local_judges_the_running_comfyui(tmp_path, torch_python, launcher):
    """A ComfyUI started with its Triton cache on the shared volume fails caches.local, naming it,
    whatever podcheck's own environment says; started with a local cache, it passes."""
    from sim_comfyui import comfy_log, comfy_pod, user_flags

    pod = comfy_pod(tmp_path, torch_python, sage="off")
    local = {"TRITON_CACHE_DIR": str(tmp_path / "local-triton"), "TORCHINDUCTOR_CACHE_DIR": str(tmp_path / "ind")}
    shared = {**local, "TRITON_CACHE_DIR": str(pod.workspace / ".triton")}
    comfy = launcher.start(pod.workspace / "ComfyUI", "--cpu", *user_flags(pod.workspace, "alice"),
                           python=torch_python, log=comfy_log(pod), env=shared)
    run = pod.podcheck("--select", "caches.local", "--json", "-", env=local)
    msg = run.result("caches.local")["message"]
    assert run.status("caches.local") == "failed" and f"ComfyUI pid {comfy.pid}: Triton {pod.workspace}/.triton" in msg
    assert run.result("caches.local")["repair"] == "comfyui.relaunch"
    comfy.stop()
    launcher.start(pod.workspace / "ComfyUI", "--cpu", *user_flags(pod.workspace, "alice"),
                   python=torch_python, log=comfy_log(pod), env=local)
    run = pod.podcheck("--select", "caches.local", "--json", "-", env=shared)
    assert run.status("caches.local") == "passed", run.result("caches.local")["message"]
