"""numpy against what compiled extensions were built for, built for real: a pod python with numpy 2.2.6
and the real pandas 1.5.3 wheel (compiled against numpy 1.x), pandas one of ComfyUI's requirements.
`import pandas` there raises "numpy.dtype size changed, may indicate binary incompatibility"; the check
that imports ComfyUI's requirements (comfyui.installed) must name numpy's ABI, the module and the way
out. Then the fault is fixed as a user would, `pip install "numpy<2"` into the pod python, and it passes.

gpu.torch_set judges numpy through torchvision and torchaudio only; this pod has neither (the CPU torch
venv), so it passes throughout: pandas is not part of the torch set.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import podsim
from sim_comfyui import comfy_pod

SELECT = ("--json", "-", "--select", "comfyui.installed", "--select", "gpu.torch_set")
#: Installs from the downloaded wheels alone, without the machine's pip config (its find-links, constraints).
PIP_ENV = {"PIP_CONFIG_FILE": "/dev/null"}


def pod_python(dest: Path) -> Path:
    """A venv with its own pip (as a pod has) that sees the cached CPU torch venv through a .pth file."""
    subprocess.run([podsim.BASE_PYTHON, "-m", "venv", str(dest)], check=True)
    (podsim.site_packages(dest) / "podcheck-torch.pth").write_text(
        str(podsim.site_packages(podsim.torch_venv().parent.parent)) + "\n")
    return dest / "bin" / "python"


def install(python: Path, *specs: str) -> None:
    podsim.pip(python, "--no-index", "--find-links", str(podsim.numpy_abi_wheelhouse()), "--no-compile", *specs,
               env=PIP_ENV)


def test_numpy_2_under_an_extension_built_for_numpy_1(tmp_path):
    python = pod_python(tmp_path / "venv")
    install(python, podsim.PANDAS_NUMPY1_SPEC, podsim.NUMPY2_SPEC)
    # the fault is real: this pandas cannot be imported next to this numpy
    done = subprocess.run([str(python), "-c", "import pandas"], capture_output=True, text=True)
    assert done.returncode == 1 and "numpy.dtype size changed" in done.stderr, done.stderr[-2000:]

    pod = comfy_pod(tmp_path / "pod", python, sage="off", requirements=("pandas",))
    result = pod.podcheck(*SELECT)
    assert result.rc == 1, result.stderr[-2000:]
    installed = result.result("comfyui.installed")
    message = installed["message"]
    assert installed["status"] == "failed", installed
    assert "cannot import pandas" in message and "numpy.dtype size changed" in message, message
    assert "numpy 2.2.6 is not the numpy pandas was compiled for" in message, message
    assert 'pip install "numpy<2"' in message and "upgrade pandas" in message, message
    assert result.status("gpu.torch_set") == "passed", result.result("gpu.torch_set")

    # the way out the message gives, done for real; the install changes the fingerprint, so no reuse
    install(python, "numpy<2")
    result = pod.podcheck(*SELECT)
    assert result.rc == 0, (result.stdout[-3000:], result.stderr[-2000:])
    assert result.status("comfyui.installed") == "passed", result.result("comfyui.installed")
    assert "numpy 1.26.4" in result.result("gpu.torch_set")["message"]
