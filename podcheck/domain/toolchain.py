"""The toolchain header (like `flutter doctor`'s): python, torch (CUDA), torchvision, sage, triton,
ComfyUI, GPUs, driver, in one line each, from the facts a run already gathered (no probe of its own).

>>> rows({"python": {"version": "3.11.2", "packages": {"triton": None}}, "nvml": {"available": False}})[0]
('python', '3.11.2')
"""
from __future__ import annotations

import re
from typing import Any

COMFYUI_VERSION = re.compile(r"__version__\s*=\s*['\"]([^'\"]+)")


def comfyui_version(text: str | None) -> str | None:
    """The version in ComfyUI's comfyui_version.py, or None."""
    found = COMFYUI_VERSION.search(text or "")
    return found.group(1) if found else None


def rows(facts: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(label, value) per tool; 'not installed', or why it is unknown, where the facts say so."""
    if not facts:
        return []
    py, torch, sage, nvml = (facts.get(k) or {} for k in ("python", "torch", "sage", "nvml"))
    packages = py.get("packages") or {}
    unknown = f"unknown ({facts['probe_error']})" if facts.get("probe_error") else "unknown"
    out = [("python", f"{py['version']}" + (f" ({py['executable']})" if py.get("executable") else ""))
           if py.get("version") else ("python", unknown)]
    if torch.get("version"):
        cuda = f"CUDA {torch['cuda']}" if torch.get("cuda") else "CPU build"
        seen = f", {torch.get('device_count', 0)} GPU(s) visible" if torch.get("cuda") else ""
        out.append(("torch", f"{torch['version']} ({cuda}{seen})"))
    else:
        out.append(("torch", "not installed" if torch.get("missing") else
                    f"import fails: {torch['error']}" if torch.get("error") else unknown))
    for label, name in (("torchvision", "torchvision"), ("sage", "sageattention"), ("triton", "triton")):
        version = (sage.get("version") if name == "sageattention" else None) or packages.get(name)
        out.append((label, version or ("not installed" if py else unknown)))
    out.append(("ComfyUI", facts.get("comfyui_version") or "unknown (no comfyui_version.py)"))
    gpus = nvml.get("gpus") or []
    if nvml.get("available") and gpus:
        names = sorted({str(g.get("name")) for g in gpus})
        out.append(("GPUs", f"{len(gpus)} x {', '.join(names)}"))
        cuda = nvml.get("cuda_driver_version")
        driver_cuda = f" (CUDA {cuda // 1000}.{cuda % 1000 // 10})" if isinstance(cuda, int) else ""
        out.append(("driver", f"{nvml.get('driver_version') or 'unknown'}{driver_cuda}"))
    else:
        out.append(("GPUs", f"none ({nvml.get('error') or 'no GPU facts'})"))
        out.append(("driver", "none"))
    return out


def render(facts: dict[str, Any] | None, indent: str = "  ") -> list[str]:
    """The header as text lines, labels aligned."""
    found = rows(facts)
    width = max((len(label) for label, _ in found), default=0)
    return [f"{indent}{label:<{width}}  {value}" for label, value in found]
