"""gpu: the driver, and a torch build that can drive this GPU."""
import pytest

from podcheck.domain import gpu


def probe_failure(facts, what):
    """The message for a check whose probe facts are missing."""
    why = facts.probe_error or "the probe printed nothing about it"
    if why.startswith("pod python not"):
        return f"{why}: create the pod venv or fix [pod] python"
    return f"cannot judge {what}: {why}"


@pytest.mark.podcheck(id="gpu.driver", gpu=True, remedy="pick a pod whose driver supports the torch build's CUDA (RunPod: filter by CUDA version)")
def test_driver(pod, facts, gpus, say):
    """NVML sees a GPU, and the driver supports the CUDA version of the pod's torch build."""
    nvml = facts.nvml
    assert nvml.get("available") and gpus, (
        f"no usable NVIDIA GPU: {nvml.get('error') or 'NVML lists no GPU'}. This pod has no working driver: "
        'pick a GPU pod, or set [pod] gpu = "absent" for a CPU pod')
    torch_cuda = facts.torch.get("cuda")
    driver_cuda = facts.driver_cuda
    shown = f"{driver_cuda[0]}.{driver_cuda[1]}" if driver_cuda else "unknown"
    assert gpu.driver_supports(driver_cuda, torch_cuda), (
        f"driver {nvml.get('driver_version')} supports CUDA {shown}, but torch {facts.torch.get('version')} "
        f"needs CUDA {torch_cuda}: pick a pod whose driver supports CUDA {torch_cuda} (RunPod: filter by CUDA version), "
        f"or install a torch build for CUDA {shown} or older ([torch] index_url)")
    names = ", ".join(gpu.describe(g) for g in gpus)
    say(f"driver {nvml.get('driver_version')} (CUDA {shown}); {names}")


@pytest.mark.podcheck(id="gpu.torch_build", repair="torch", profiles=("image", "boot", "runtime"))
def test_torch_build(pod, facts, say):
    """The pod python imports torch, and torch.version.cuda is the configured one."""
    python = pod.config.pod.python
    t = facts.torch
    assert t, probe_failure(facts, "the pod's torch")
    assert not t.get("missing"), f"torch is not installed in the pod python {python}"
    assert "error" not in t, f"import torch fails in {python}: {t['error']}"
    expected = pod.config.torch.cuda
    version, cuda = t.get("version"), t.get("cuda")
    if expected == "cpu":
        assert cuda is None, (
            f"torch {version} is a CUDA {cuda} build; expected a CPU build ([torch] cuda = \"cpu\")")
        say(f"torch {version} (CPU build) in {python}")
        return
    assert cuda is not None, (
        f"torch {version} is a CPU build; expected CUDA {expected} ({gpu.cuda_tag(expected)})")
    assert gpu.parse_cuda(cuda) == gpu.parse_cuda(expected), (
        f"torch {version} is built for CUDA {cuda}; expected CUDA {expected} ({gpu.cuda_tag(expected)})")
    say(f"torch {version} (CUDA {cuda}) in {python}")


@pytest.mark.podcheck(id="gpu.torch_sees_gpu", repair="torch", needs=("gpu.driver", "gpu.torch_build"))
def test_torch_sees_gpu(pod, facts, gpus, say):
    """torch can use every GPU: CUDA is available, the arch list covers it, a matmul runs on it."""
    if pod.config.torch.cuda == "cpu":
        pytest.skip('a CPU build of torch is expected ([torch] cuda = "cpu")')
    t = facts.torch
    assert t.get("cuda_available"), (
        f"torch {t.get('version')} cannot use the GPU: torch.cuda.is_available() is False"
        + (f" ({t['cuda_error']})" if t.get("cuda_error") else ""))
    arch = t.get("arch_list") or []
    devices = t.get("devices") or []
    assert devices, f"torch {t.get('version')} sees no CUDA device although NVML lists {len(gpus)}"
    for dev in devices:
        cap = dev.get("capability")
        assert cap, f"torch cannot read GPU {dev.get('index')}: {dev.get('error')}"
        assert gpu.arch_covers(cap, arch), (
            f"{gpu.describe(dev)} has compute capability {cap[0]}.{cap[1]}, which torch {t.get('version')} "
            f"has no kernels for (arch list: {' '.join(arch) or 'empty'}); it needs {gpu.needed_build(cap)}")
        assert dev.get("matmul") == "ok", (
            f"a matmul on {gpu.describe(dev)} failed: {dev.get('matmul') or facts.probe_error or 'not run'}")
    say(f"{len(devices)} GPU(s) usable; arch list {' '.join(arch)}")


@pytest.mark.podcheck(id="gpu.torch_set", repair="torch", profiles=("image", "boot", "runtime"),
                      needs=("gpu.torch_build",))
def test_torch_set(pod, facts, say):
    """torch, torchvision and torchaudio import together and were built for one another (their torch pins,
    their CUDA builds), and numpy is the one their compiled parts were built for."""
    t, s = facts.torch, facts.torchset
    assert s, probe_failure(facts, "torchvision and torchaudio")
    problems = gpu.torch_set_problems(t, s, pod.config)
    assert not problems, "; ".join(problems) + ". " + gpu.torch_set_remedy(t, pod.config)
    shown = [f"torch {t.get('version')}"] + [f"{name} {(s.get(name) or {}).get('version')}"
                                             for name in ("torchvision", "torchaudio") if (s.get(name) or {}).get("version")]
    numpy = (s.get("numpy") or {}).get("version")
    say(", ".join(shown) + " work together" + (f" (numpy {numpy})" if numpy else ""))
