"""The probe's install-only sections (torchset, requirements: importing torchvision, torchaudio and
ComfyUI's modules costs seconds on a real pod, more than `import torch`) are kept in state_dir per
pod and reused while the install fingerprint holds; an install, or another pod (host name), judges
afresh. And the run order lets the probe overlap every check that does not wait for it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from types import SimpleNamespace

import fixsim
import podsim
import pytest

from podcheck import plugin


def facts_of(pod, prefix=()):
    env = {**os.environ, "PODCHECK_CONFIG": str(pod.config_path), **pod.env}
    env.pop("PODCHECK_WORKSPACE", None)
    done = subprocess.run([*prefix, sys.executable, "-m", "podcheck", "facts"], capture_output=True, text=True,
                          env=env, cwd=pod.root, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def kept(pod):
    return sorted(pod.state_dir.glob("probe-install-*.json"))


def test_install_facts_are_kept_until_something_is_installed(cpu_pod, tmp_path):
    python = podsim.layered_venv(tmp_path / "venv")
    cpu_pod.configure(pod={"python": str(python)})
    first = facts_of(cpu_pod)
    assert first["install"]["reused"] is False and first["torchset"] and first["probe_error"] is None
    [doc] = kept(cpu_pod)
    written = doc.stat().st_mtime_ns
    second = facts_of(cpu_pod)
    assert second["install"] == {"fingerprint": first["install"]["fingerprint"], "reused": True}
    assert second["torchset"] == first["torchset"] and second["requirements"] == first["requirements"]
    assert second["torch"]["version"] == first["torch"]["version"]  # judged afresh every run
    assert doc.stat().st_mtime_ns == written, "a run that reused the install facts wrote them again"

    podsim.pip(sys.executable, fixsim.TABULATE, "--no-index", "--find-links", str(fixsim.wheelhouse()),
               target=podsim.site_packages(tmp_path / "venv"))  # a real install into the pod venv
    third = facts_of(cpu_pod)
    assert third["install"]["reused"] is False and third["install"]["fingerprint"] != first["install"]["fingerprint"]


@pytest.mark.skipif(shutil.which("unshare") is None, reason="needs util-linux unshare")
def test_another_pod_on_the_volume_judges_afresh(cpu_pod, tmp_path):
    """Pods share state_dir and often the venv; a new pod is a new container (its own system
    libraries), so its host name keeps its install facts apart."""
    python = podsim.layered_venv(tmp_path / "venv")
    cpu_pod.configure(pod={"python": str(python)})
    facts_of(cpu_pod)
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a UTS namespace here: {probe.stderr.decode().strip()}")
    other = facts_of(cpu_pod, prefix=("unshare", "--uts", "sh", "-c", 'hostname pod-b && exec "$@"', "sh"))
    assert other["install"]["reused"] is False
    assert len(kept(cpu_pod)) == 2
    assert facts_of(cpu_pod)["install"]["reused"] is True  # the first pod's are untouched


class Item(SimpleNamespace):
    """What _ordered reads of a pytest Item (hashable, as items are)."""
    __hash__ = object.__hash__


def item(name, needs=(), facts=False):
    spec = SimpleNamespace(id=name, needs=needs)
    return Item(name=name, fixturenames=["pod", "facts"] if facts else ["pod"], spec=spec)


def test_checks_that_wait_for_the_probe_through_a_prerequisite_run_last():
    """comfyui.running needs no facts itself, but its prerequisite chain ends at gpu.torch_build:
    placed first, it made every check after it wait for the probe."""
    torch_build = item("gpu.torch_build", facts=True)
    running = item("comfyui.running", needs=("gpu.torch_build",))
    disk = item("disk.workspace")
    order = plugin._ordered([running, torch_build, disk], {i: i.spec for i in (running, torch_build, disk)})
    assert [i.name for i in order] == ["disk.workspace", "gpu.torch_build", "comfyui.running"]


def test_keeping_them_never_makes_a_missing_workspace(cpu_pod, tmp_path):
    """The fleet test's pod without a volume: the kept facts once created {workspace}/.podcheck, so the
    next run saw a workspace (the unattached volume's mount point, on the container's disk)."""
    python = podsim.layered_venv(tmp_path / "venv")
    shutil.rmtree(cpu_pod.workspace)
    cpu_pod.configure(pod={"python": str(python)})
    assert facts_of(cpu_pod)["torchset"]
    assert not cpu_pod.workspace.exists()
