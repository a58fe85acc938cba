"""The acceptance case of a first install, on the real programs: a bare pod whose `[comfyui] repo` is a
git repo of the real ComfyUI 0.3.64, the registry's CUDA 13.0 torch set from a local wheelhouse, no GPU.
One `podcheck --fix` must end with ComfyUI answering /system_stats for the pod's user and every check
passing; a second `--fix` changes nothing. A CPU-torch pod cannot work here (the only torchvision 0.28.0
is a CUDA build) and must end in a failure naming the torch-set mismatch and what to install.

The first --fix installs ~5.5 GB for real (pip from the wheelhouse, `--no-compile`), so the pod is
built once per module and the tests read it in order."""
from __future__ import annotations

import json
import time
import urllib.request

import fixsim
import psutil
import pytest
import realparts

pytestmark = pytest.mark.xdist_group("real-bare")
OK = ("passed", "skipped")


def comfy_argv(pod):
    main = f"{pod.workspace}/ComfyUI/main.py"
    return [p.info["cmdline"] for p in psutil.process_iter(["cmdline"]) if main in (p.info["cmdline"] or [])]


def option(argv, flag):
    return argv[argv.index(flag) + 1] if flag in argv else None


@pytest.fixture(scope="module")
def converged(tmp_path_factory):
    root = tmp_path_factory.mktemp("realbare")
    pod = realparts.bare_pod(root)
    began = time.monotonic()
    run = pod.podcheck("--fix", "--json", "-", timeout=3000)
    seconds = time.monotonic() - began
    print(f"\nfirst --fix on a bare real-ComfyUI pod: {seconds:.0f} s")
    yield pod, run
    fixsim.stop_pod(root)


def test_one_fix_takes_a_bare_pod_to_a_real_comfyui_answering_for_its_user(converged):
    pod, run = converged
    assert run.rc == 0, run.stdout[-6000:] + run.stderr[-3000:]
    bad = {r["id"]: r["message"] for r in run.json["results"] if r["status"] not in OK}
    assert not bad, bad
    for check in ("gpu.torch_build", "gpu.torch_set", "comfyui.installed", "comfyui.running",
                  "comfyui.launch_flags", "attention.sage_import", "isolation.user_dirs"):
        assert run.status(check) == "passed", run.result(check)
    torch = next(r for r in run.json["repairs"] if r["id"] == "torch")
    assert "torchvision==0.28.0" in " ".join(torch["commands"]) and "torchaudio==2.11.1" in " ".join(torch["commands"])
    assert "--index-url https://download.pytorch.org/whl/cu130" in " ".join(torch["commands"])  # follows [torch] cuda
    [argv] = comfy_argv(pod)
    assert "--cpu" in argv, argv  # derived from [pod] gpu = "absent": the config never asked for it
    port = int(option(argv, "--port"))
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=10) as resp:
        stats = json.load(resp)
    assert stats["system"]["comfyui_version"] == realparts.COMFYUI_VERSION
    assert stats["system"]["pytorch_version"] == "2.13.0+cu130"
    assert stats["devices"][0]["type"] == "cpu"
    assert option(stats["system"]["argv"], "--output-directory") == f"{pod.workspace}/output/alice"


def test_a_second_fix_changes_nothing(converged):
    pod, _ = converged
    before = comfy_argv(pod)
    run = pod.podcheck("--fix", "--json", "-", timeout=900)
    assert run.rc == 0, run.stdout[-4000:] + run.stderr[-2000:]
    assert {r["status"] for r in run.json["repairs"]} <= {"unchanged"}, run.json["repairs"]
    assert comfy_argv(pod) == before


def test_a_cpu_torch_pod_fails_naming_the_torch_set_mismatch(tmp_path):
    if realparts.cpu_torch_wheels() is None:
        pytest.skip("this machine has no local torch 2.13.0+cpu wheel to build the CPU pod from")
    pod = realparts.bare_pod(tmp_path, cuda="cpu", sage="off")
    try:
        run = pod.podcheck("--fix", "--json", "-", timeout=1800)
    finally:
        fixsim.stop_pod(tmp_path)
    assert run.rc != 0, run.stdout[-3000:]
    torch = next(r for r in run.json["repairs"] if r["id"] == "torch")
    assert torch["status"] == "failed", torch
    message = run.result("gpu.torch_set")["message"]
    assert run.status("gpu.torch_set") == "failed", message
    for words in ("torchvision 0.28.0", "operator torchvision::nms does not exist",
                  "a CUDA 13.0 build, torch 2.13.0+cpu a CPU build",
                  "pip install torch==2.13.0 torchvision==0.28.* torchaudio==2.13.* "
                  "--index-url https://download.pytorch.org/whl/cpu"):
        assert words in message and words.split(" --")[0] in torch["message"] + message, (words, message)
    assert run.status("comfyui.installed") != "passed"  # never "requirements met" while ComfyUI cannot import
