"""caches: compiled kernels and engines match this GPU, and live on local disk."""
import pytest

from podcheck.domain import caches, comfyui
from podcheck.host import procs


@pytest.mark.podcheck(id="caches.gpu_unchanged", repair="caches.clear", needs=("pod.workspace", "gpu.driver"))
def test_gpu_unchanged(pod, gpus, say):
    """No kernel cache built for a previous GPU is left (Triton, Inductor, torch, CUDA, TensorRT).

    The GPU fingerprint (name and compute capability) is kept in state; caches in $HOME and the workspace
    are attributed to the GPU that was current when they were written."""
    ok, message = caches.judge_gpu_change(pod, gpus, caches.host_env(pod), procs.now(pod))
    assert ok, message
    say(message)


@pytest.mark.podcheck(id="caches.local", repair="comfyui.relaunch")
def test_local(pod, say):
    """The Triton and TorchInductor caches in use are on local disk, not the shared volume or a network fs.

    Judged in each running ComfyUI's own environment (what comfyui.relaunch changes); with none
    running, in the host's (what a ComfyUI started from it would use)."""
    running = [(f"ComfyUI pid {p.pid}", procs.environ(pod, p.pid)) for p in comfyui.processes(pod)]
    problems, seen = [], []
    for who, env in running or [("", caches.host_env(pod))]:
        bad, used = caches.not_local(pod, env)
        problems += [f"{who}: {b}" if who else b for b in bad]
        seen += [f"{who}: {u}" if who else u for u in used]
    assert not problems, "; ".join(problems)
    say("; ".join(seen))


@pytest.mark.podcheck(id="caches.tensorrt", repair="caches.clear", needs=("pod.workspace", "gpu.driver"))
def test_tensorrt(pod, gpus, say):
    """No TensorRT engine (<output>/tensorrt/, models/tensorrt/) was built on another GPU."""
    status, message = caches.judge_tensorrt(pod, gpus, caches.host_env(pod), procs.now(pod))
    if status == "skipped":
        pytest.skip(message)
    assert status == "passed", message
    say(message)
