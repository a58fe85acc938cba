"""Issue-2 checks on simulated pods: the healthy CPU pod, and each fault built for real."""
from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import podsim

CORE = ["pod.workspace", "system.ffmpeg", "gpu", "attention.sage_import"]
SELECT = [arg for check in CORE for arg in ("--select", check)]


def core(pod, *args, **kw):
    """Run the issue-2 checks with JSON output."""
    return pod.podcheck("--json", "-", *SELECT, *args, **kw)


def fake_torch(venv_python, init_body):
    """Give a venv a `torch` package whose import does `init_body` (hang, crash...)."""
    sp = podsim.site_packages(venv_python.parent.parent)
    (sp / "torch").mkdir()
    (sp / "torch" / "__init__.py").write_text(init_body)
    return venv_python


def test_healthy_cpu_pod_passes(cpu_pod, tmp_path):
    run = core(cpu_pod, "--junit-xml", str(tmp_path / "junit.xml"))
    assert run.rc == 0, run.stdout + run.stderr
    data = run.json
    assert data["schema"] == "podcheck/1" and data["profile"] == "runtime" and data["host"] == "local"
    assert run.statuses() == {
        "pod.workspace": "passed", "system.ffmpeg": "passed", "gpu.torch_build": "passed", "gpu.torch_set": "passed",
        "gpu.driver": "skipped", "gpu.torch_sees_gpu": "skipped", "attention.sage_import": "skipped"}
    assert run.result("gpu.torch_build")["message"].startswith("torch 2.13.0+cpu (CPU build)")
    assert run.result("system.ffmpeg")["message"].startswith("ffmpeg ")
    assert data["summary"] == {"passed": 4, "failed": 0, "skipped": 3, "error": 0, "root_causes": []}
    assert all(set(r) >= {"id", "area", "status", "message", "repair", "blocked_by", "duration_s"}
               for r in data["results"])
    suite = ET.parse(tmp_path / "junit.xml").getroot().find("testsuite")
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("7", "0", "3")


def test_ffmpeg_missing_from_path(cpu_pod, tmp_path):
    run = core(cpu_pod, env={"PATH": podsim.path_without("ffmpeg", root=tmp_path)})
    assert run.rc == 1
    result = run.result("system.ffmpeg")
    assert result["status"] == "failed" and "ffmpeg not found on PATH" in result["message"]
    assert result["repair"] == "ffmpeg"
    assert run.status("gpu.torch_build") == "passed" and run.status("pod.workspace") == "passed"


def test_missing_interpreter_is_one_root_cause(cpu_pod, tmp_path):
    missing = tmp_path / "workspace" / "venv" / "bin" / "python"
    cpu_pod.configure(pod={"python": str(missing)}, attention={"sage": "required"})
    run = core(cpu_pod)
    assert run.rc == 1
    build = run.result("gpu.torch_build")
    assert build["status"] == "failed" and f"pod python not found: {missing}" in build["message"]
    sage = run.result("attention.sage_import")
    assert (sage["status"], sage["blocked_by"], sage["message"]) == ("skipped", "gpu.torch_build",
                                                                    "blocked by gpu.torch_build")
    assert run.status("system.ffmpeg") == "passed" and run.status("pod.workspace") == "passed"
    assert [r["id"] for r in run.json["results"] if r["status"] == "failed"] == ["gpu.torch_build"]


def test_venv_without_torch(cpu_pod, tmp_path):
    cpu_pod.configure(pod={"python": str(podsim.bare_venv(tmp_path / "venv"))})
    run = core(cpu_pod)
    assert run.rc == 1
    assert "torch is not installed in the pod python" in run.result("gpu.torch_build")["message"]
    assert run.status("system.ffmpeg") == "passed"


def test_cpu_torch_when_cuda_expected(cpu_pod):
    cpu_pod.configure(torch={"cuda": "12.9"})
    run = core(cpu_pod)
    assert run.rc == 1
    assert run.result("gpu.torch_build")["message"] == (
        "torch 2.13.0+cpu is a CPU build; expected CUDA 12.9 (cu129)")
    assert run.result("gpu.torch_build")["repair"] == "torch"
    assert run.status("gpu.driver") == "skipped" and run.status("pod.workspace") == "passed"


def test_sage_required_but_not_installed(cpu_pod):
    cpu_pod.configure(attention={"sage": "required"})
    run = core(cpu_pod)
    assert run.rc == 1
    result = run.result("attention.sage_import")
    assert result["status"] == "failed" and "sageattention is not installed" in result["message"]
    assert run.status("gpu.torch_build") == "passed"


def test_sage_optional_and_missing_is_skipped(cpu_pod):
    cpu_pod.configure(attention={"sage": "optional"})
    run = core(cpu_pod)
    assert run.rc == 0 and run.status("attention.sage_import") == "skipped"


def test_sage_installed_without_triton(cpu_pod, tmp_path):
    """sageattention 1.0.6 is pure Python over Triton: on CPU its import dies on `import triton`."""
    python = podsim.layered_venv(tmp_path / "sagevenv", "sageattention==1.0.6")
    cpu_pod.configure(pod={"python": str(python)}, attention={"sage": "required"})
    run = core(cpu_pod)
    message = run.result("attention.sage_import")["message"]
    assert run.rc == 1 and message.startswith("import sageattention 1.0.6 fails: ModuleNotFoundError")
    assert "its dependency triton is missing" in message
    assert run.status("gpu.torch_build") == "passed"


def test_probe_that_hangs_is_bounded(cpu_pod, tmp_path):
    python = fake_torch(podsim.bare_venv(tmp_path / "venv"), "import time\ntime.sleep(600)\n")
    cpu_pod.configure(pod={"python": str(python), "probe_timeout": 3.0}, attention={"sage": "required"})
    started = time.monotonic()
    run = core(cpu_pod)
    assert time.monotonic() - started < 3 + 20, "a hung probe must not hang podcheck"
    message = run.result("gpu.torch_build")["message"]
    assert run.rc == 1 and "probe timed out after 3 s during import torch" in message
    assert run.result("attention.sage_import")["blocked_by"] == "gpu.torch_build"
    assert run.status("system.ffmpeg") == "passed"


def test_probe_that_dies_by_a_signal(cpu_pod, tmp_path):
    python = fake_torch(podsim.bare_venv(tmp_path / "venv"), "import ctypes\nctypes.string_at(0)\n")
    cpu_pod.configure(pod={"python": str(python)})
    run = core(cpu_pod)
    message = run.result("gpu.torch_build")["message"]
    assert run.rc == 1 and "died by signal 11 (SIGSEGV) during import torch" in message


def test_probe_output_that_is_not_json(cpu_pod, tmp_path):
    python = podsim.fake_python(tmp_path / "py" / "python", 'echo "Welcome to the pod!"')
    cpu_pod.configure(pod={"python": str(python)})
    run = core(cpu_pod)
    assert run.rc == 1 and "probe printed no facts" in run.result("gpu.torch_build")["message"]


def test_no_pod_at_all(tmp_path):
    """A machine that is no pod: a few root causes, not a wall of failures."""
    pod = podsim.SimPod(tmp_path)
    pod.configure(pod={"workspace": str(tmp_path / "nowhere")})
    run = pod.podcheck("--json", "-")
    assert run.rc == 1
    failed = sorted(r["id"] for r in run.json["results"] if r["status"] in ("failed", "error"))
    assert {"pod.workspace", "gpu.torch_build", "gpu.driver"} <= set(failed)
    assert len(failed) <= 5, failed
    assert "NVML" in run.result("gpu.driver")["message"]
