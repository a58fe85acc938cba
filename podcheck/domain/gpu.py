"""GPU judgement: pure functions over facts (NVML and the probe's torch facts).

>>> arch_covers((8, 9), ["sm_80", "sm_86", "sm_90"])
True
>>> arch_covers((12, 0), ["sm_80", "sm_86", "sm_90"])
False
>>> cuda_from_driver_int(12090)
(12, 9)
"""
from __future__ import annotations

import re
from typing import Any, Iterable, Sequence

ARCH = re.compile(r"^(sm|compute)_(\d+)(\d)([af]?)$")

#: The first CUDA toolkit whose torch wheels carry kernels for a capability major (PyTorch release
#: matrices, RELEASE.md PRs #164471 and #175253; Blackwell wheels since cu128, PyTorch 2.7 blog).
FIRST_CUDA_FOR_MAJOR = {12: (12, 8), 10: (12, 8), 9: (11, 8), 8: (11, 1), 7: (10, 0)}


def parse_arch(entry: str) -> tuple[str, int, int, str] | None:
    """'sm_86' -> ('sm', 8, 6, ''); 'compute_120' -> ('compute', 12, 0, ''); 'sm_90a' -> ('sm', 9, 0, 'a')."""
    m = ARCH.match(entry.strip())
    if not m:
        return None
    return m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)


def arch_covers(capability: Sequence[int], arch_list: Iterable[str]) -> bool:
    """True when some entry of torch's arch list can run on a device of this compute capability.

    A cubin `sm_XY` runs on the same major with a minor at or above Y (sm_86 code runs on 8.9);
    `sm_XYa` only on exactly X.Y; PTX `compute_XY` is JIT-compiled for any device at or above X.Y.
    """
    major, minor = int(capability[0]), int(capability[1])
    for entry in arch_list:
        parsed = parse_arch(entry)
        if parsed is None:
            continue
        kind, a_major, a_minor, suffix = parsed
        if kind == "compute" and (a_major, a_minor) <= (major, minor):
            return True
        if kind == "sm" and a_major == major:
            if suffix == "a" and a_minor == minor:
                return True
            if suffix != "a" and a_minor <= minor:
                return True
    return False


def sm_name(capability: Sequence[int]) -> str:
    """(12, 0) -> 'sm_120'."""
    return f"sm_{int(capability[0])}{int(capability[1])}"


def cuda_from_driver_int(value: int) -> tuple[int, int]:
    """NVML's nvmlSystemGetCudaDriverVersion integer (12090) -> (12, 9)."""
    return value // 1000, (value % 1000) // 10


def parse_cuda(text: str | None) -> tuple[int, int] | None:
    """'12.9' -> (12, 9); None or 'cpu' -> None."""
    if not text:
        return None
    m = re.match(r"^\s*(\d+)\.(\d+)", str(text))
    return (int(m.group(1)), int(m.group(2))) if m else None


def cuda_tag(version: tuple[int, int] | str | None) -> str:
    """(12, 9) or '12.9' -> 'cu129'."""
    parsed = parse_cuda(version) if isinstance(version, str) or version is None else version
    return f"cu{parsed[0]}{parsed[1]}" if parsed else "cpu"


#: Where PyTorch publishes its builds, one index per CUDA version (and `cpu`).
PYTORCH_INDEX = "https://download.pytorch.org/whl/"


def torch_index(cuda: str, index_url: str) -> str:
    """The index torch, torchvision and torchaudio come from: `[torch] index_url`, where "auto" means
    PyTorch's index for `[torch] cuda` ('13.0' -> .../whl/cu130, 'cpu' -> .../whl/cpu)."""
    if index_url != "auto":
        return index_url
    return PYTORCH_INDEX + ("cpu" if cuda == "cpu" else cuda_tag(cuda))


def driver_supports(driver_cuda: tuple[int, int] | None, torch_cuda: str | None) -> bool:
    """The driver's CUDA version is at least the CUDA version torch was built with."""
    wanted = parse_cuda(torch_cuda)
    if wanted is None:
        return True
    return driver_cuda is not None and tuple(driver_cuda) >= wanted


def needed_build(capability: Sequence[int]) -> str:
    """The torch build family a device needs, worded for a message: 'a cu128+ build'."""
    first = FIRST_CUDA_FOR_MAJOR.get(int(capability[0]))
    return f"a {cuda_tag(first)}+ build" if first else "a build whose arch list includes it"


def skip_reason(gpu_setting: str, nvml: dict) -> str | None:
    """Why GPU checks do not apply to this pod, or None when they do.

    `absent`: never. `optional`: only when NVML sees a GPU. `required`: always (a missing GPU fails).
    """
    if gpu_setting == "absent":
        return 'no GPU expected ([pod] gpu = "absent")'
    if gpu_setting == "optional" and not nvml.get("gpus"):
        return f"no GPU on this pod ({nvml.get('error') or 'NVML lists none'}); [pod] gpu = \"optional\""
    return None


def describe(gpu_facts: dict) -> str:
    """'GPU 0 NVIDIA H100 80GB HBM3 (sm_90)'."""
    cap = gpu_facts.get("capability")
    label = f" ({sm_name(cap)})" if cap else ""
    return f"GPU {gpu_facts.get('index', '?')} {gpu_facts.get('name', 'unknown')}{label}"


# --- the torch set ------------------------------------------------------------------------------

def _pin_met(pin: str, version: str | None) -> bool:
    from packaging.requirements import InvalidRequirement, Requirement
    try:
        return version is not None and Requirement(pin).specifier.contains(version, prereleases=True)
    except InvalidRequirement:
        return True


def _build(cuda: str | None) -> str:
    return f"CUDA {cuda}" if cuda else "CPU"


def companions(torch_version: str | None) -> str:
    """The torchvision and torchaudio releases made for a torch release ('2.13.0+cpu' -> 'torchvision==0.28.*
    torchaudio==2.13.*'): torchvision 0.(minor+15), torchaudio the same as torch."""
    m = re.match(r"^2\.(\d+)", torch_version or "")
    if not m:
        return "torchvision torchaudio"
    minor = int(m.group(1))
    return f"torchvision==0.{minor + 15}.* torchaudio==2.{minor}.*"


def torch_set_problems(torch: dict[str, Any], torchset: dict[str, Any], cfg: Any) -> list[str]:
    """What keeps torch and the torchvision and torchaudio installed next to it from working as one set:
    one that does not import next to torch, was built for another torch (its metadata pin) or another CUDA, or
    whose compiled parts were built for another numpy. Each problem names the package and the error."""
    problems: list[str] = []
    version, cuda = torch.get("version"), torch.get("cuda")
    for name in ("torchvision", "torchaudio"):
        d = torchset.get(name) or {}
        if not d.get("version"):
            continue  # not installed: comfyui.installed judges what ComfyUI's requirements miss
        what = f"{name} {d['version']}"
        built = d.get("built_cuda")
        # CPU against CUDA breaks the compiled ops; one CUDA minor against another need not (torchaudio
        # 2.11.1+cu132 builds on torch's stable ABI and loads with torch 2.13.0+cu130)
        other_kind = "built_cuda" in d and (built is None) != (cuda is None)
        kinds = f"{what} is a {_build(built)} build, torch {version} a {_build(cuda)} build"
        if d.get("error"):
            problems.append(f"{what} does not load with torch {version}: {d['error'][:200]}"
                            + (f" ({kinds})" if other_kind else ""))
        elif other_kind:
            problems.append(kinds)
        unmet = [pin for pin in d.get("requires") or [] if not _pin_met(pin, version)]
        if unmet:
            problems.append(f"{what} was made for {', '.join(unmet)}, not torch {version}")
        if d.get("numpy_abi"):
            numpy = (torchset.get("numpy") or {}).get("version") or "?"
            problems.append(f"{what}: numpy {numpy} is not the numpy its compiled parts were built for "
                            f"({d['numpy_abi'][:200]})")
    return problems


def torch_set_remedy(torch: dict[str, Any], cfg: Any) -> str:
    """What to install so the set matches: the three from one index, in one pip command."""
    index = torch_index(cfg.torch.cuda, cfg.torch.index_url)
    version = (torch.get("version") or "").split("+")[0]
    pins = f"torch=={version} {companions(version)}" if version else "torch torchvision torchaudio"
    return (f"install torch, torchvision and torchaudio built for one another from one index, in one command: "
            f"pip install {pins}" + (f" --index-url {index}" if index else ""))
