"""Image validation (`--profile image`) on a real Debian root filesystem through testinfra's chroot
backend: a fresh build passes, a stale file and a start script without the sage flag fail, GPU
checks are "not run: no GPU". Plus the pure parts: start-script parsing and manifests."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import podsim
import pytest

from podcheck.domain import entrypoint, manifest

START = """#!/bin/bash
# start_comfyui.sh: ComfyUI with the attention the pod chose
cd /ComfyUI
case "$COMFYUI_ATTENTION_MECHANISM" in
  sage)
    echo "Starting ComfyUI with sage: python main.py --use-sage-attention"
    python main.py --listen 0.0.0.0 --port 8188 \\
        --use-sage-attention 2>&1 | tee /tmp/comfyui_start.log &
    ;;
  *)
    python main.py --listen 0.0.0.0 --port 8188 --use-sage-attention 2>&1 | tee /tmp/comfyui_start.log &
    ;;
esac
"""
# Seed bug 24: one of the start paths lost the flag (line 11 here).
STALE_START = START.replace("    python main.py --listen 0.0.0.0 --port 8188 --use-sage-attention 2>&1",
                            "    python main.py --listen 0.0.0.0 --port 8188 2>&1")
SOURCE = {"app.py": "print('control panel')\n", "templates/control_panel.html": "box-shadow: 0 0 30px rgba(16, 185, 129, 0.25);\n",
          "static/app.js": "console.log('ui');\n"}
NO_GPU = "not run: no GPU (image profile)"


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "podcheck", *args], cwd=cwd, capture_output=True, text=True, timeout=120)


@pytest.fixture
def image(tmp_path):
    """A checkout with a UI, and a root filesystem built from it (the cached debootstrap tree, hard-linked)."""
    if os.geteuid() != 0 or not shutil.which("debootstrap"):
        pytest.skip("needs root and debootstrap (chroot)")
    rootfs = tmp_path / "rootfs"
    subprocess.run(["cp", "-al", str(podsim.rootfs()), str(rootfs)], check=True)
    checkout = tmp_path / "checkout"
    for rel, text in SOURCE.items():
        (checkout / "ui" / rel).parent.mkdir(parents=True, exist_ok=True)
        (checkout / "ui" / rel).write_text(text)
    (checkout / "ui" / ".git").mkdir()  # VCS metadata and bytecode never reach the image
    (checkout / "ui" / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (checkout / "ui" / "__pycache__").mkdir()
    (checkout / "ui" / "__pycache__" / "app.cpython-311.pyc").write_bytes(b"\0")
    (checkout / "start_comfyui.sh").write_text(START)
    shutil.copytree(checkout / "ui", rootfs / "app" / "ui", ignore=shutil.ignore_patterns(".git", "__pycache__"))
    (rootfs / "start_comfyui.sh").write_text(START)
    pod = podsim.SimPod(tmp_path)
    pod.configure(image={"sources": {"/app/ui": "checkout/ui", "/start_comfyui.sh": "checkout/start_comfyui.sh"},
                         "start_scripts": ["/start_comfyui.sh"]})
    def validate(*args):
        return pod.podcheck("--profile", "image", "--hosts", f"chroot://{rootfs}", "--json", "-", *args)

    return SimpleNamespace(pod=pod, rootfs=rootfs, checkout=checkout, validate=validate)


def test_fresh_image_passes(image, tmp_path):
    run = image.validate("--junit-xml", str(tmp_path / "image.xml"))
    ran = {i: s for i, s in run.statuses().items() if run.result(i)["message"] != NO_GPU}
    assert ran == {
        "image.configured": "passed", "image.source_fresh": "passed", "image.entrypoint_flags": "passed",
        "system.ffmpeg": "failed",       # a minbase rootfs has no ffmpeg: unrelated, and stays so
        "gpu.torch_build": "failed",     # nor a pod venv
        "gpu.torch_set": "skipped",      # blocked by gpu.torch_build: one root cause, one failure
        "comfyui.installed": "skipped"}  # blocked by gpu.torch_build too (it imports what ComfyUI imports)
    assert run.result("gpu.torch_set")["blocked_by"] == run.result("comfyui.installed")["blocked_by"] == "gpu.torch_build"
    not_run = {i: s for i, s in run.statuses().items() if i not in ran}
    assert {"gpu.driver", "gpu.torch_sees_gpu", "memory.vram"} <= set(not_run)  # GPU checks: never "passed"
    assert set(not_run.values()) == {"skipped"}
    assert run.result("image.source_fresh")["message"] == "4 file(s) in 2 source(s) match the source checkout"
    assert run.result("image.entrypoint_flags")["message"] == "2 launch line(s) pass --use-sage-attention"
    assert run.json["host"] == f"chroot://{image.rootfs}" and run.json["profile"] == "image"
    suite = ET.parse(tmp_path / "image.xml").getroot().find("testsuite")
    skipped = {c.get("name"): c.find("skipped").get("message") for c in suite if c.find("skipped") is not None}
    assert skipped == {**dict.fromkeys(not_run, NO_GPU), "comfyui.installed": run.result("comfyui.installed")["message"],
                       "gpu.torch_set": run.result("gpu.torch_set")["message"]}
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == (
        str(len(ran) + len(not_run)), "2", str(len(not_run) + 2))

    report = image.pod.podcheck("report", "--format", "json", "--profile", "image", "--hosts", f"chroot://{image.rootfs}")
    doc = report.json
    assert report.rc == 0 and doc["complete"] and doc["checks"]["summary"] == run.json["summary"]
    system = next(s for s in doc["sections"] if s["title"] == "System")
    assert system["rows"]["os"] == "Debian GNU/Linux 12 (bookworm)" and system["rows"]["target"] == f"chroot://{image.rootfs}"
    comfy = next(s for s in doc["sections"] if s["title"] == "ComfyUI")
    assert comfy["rows"]["ComfyUI processes"] == 0 and any("ComfyUI version" in m for m in comfy["not_collected"])


def test_comfyui_on_the_volume_is_not_judged_in_an_image(tmp_path, torch_python):
    """Where the pod's torch is fine, comfyui.installed in the image profile says why it is not judged."""
    pod = podsim.cpu_pod(tmp_path, torch_python)
    run = pod.podcheck("--profile", "image", "--select", "comfyui.installed", "--json", "-")
    result = run.result("comfyui.installed")
    assert result["status"] == "skipped" and result["blocked_by"] is None, result
    assert result["message"].startswith(f"ComfyUI is on the workspace volume ({pod.workspace}/ComfyUI)"), result


def test_stale_image_and_missing_flag_fail(image):
    """Validated against a manifest written at build time (the checkout is gone), like CI would."""
    done = cli("manifest", "checkout/ui", "checkout/start_comfyui.sh", "-o", "manifest.json", cwd=image.pod.root)
    assert done.returncode == 0 and "4 file(s) of 2 source(s)" in done.stderr
    shutil.rmtree(image.checkout)
    image.pod.configure(image={"manifest": "manifest.json"})
    (image.rootfs / "app/ui/templates/control_panel.html").write_text("box-shadow: 0 0 30px rgba(16, 185, 129, 0.8);\n")
    (image.rootfs / "app/ui/static/app.js").unlink()
    (image.rootfs / "start_comfyui.sh").write_text(STALE_START)
    run = image.validate()
    fresh = run.result("image.source_fresh")
    assert fresh["status"] == "failed"
    assert fresh["message"].startswith("the image is a stale build, it does not match manifest manifest.json: ")
    assert "2 file(s) differ from checkout/ui" not in fresh["message"]
    assert "1 file(s) differ from checkout/ui: /app/ui/templates/control_panel.html" in fresh["message"]
    assert "1 file(s) of checkout/ui are missing: /app/ui/static/app.js" in fresh["message"]
    assert "1 file(s) differ from checkout/start_comfyui.sh: /start_comfyui.sh" in fresh["message"]
    flags = run.result("image.entrypoint_flags")
    assert flags["status"] == "failed" and flags["message"].startswith(
        "/start_comfyui.sh:11 launches ComfyUI without --use-sage-attention: python main.py --listen 0.0.0.0")
    assert ":7 " not in flags["message"]  # the other launch (continued over two lines) has it
    assert run.status("system.ffmpeg") == "failed" and run.status("gpu.torch_build") == "failed"
    assert run.status("gpu.driver") == "skipped" and run.result("gpu.driver")["message"] == NO_GPU
    assert [i for i, status in run.statuses().items() if status == "passed"] == ["image.configured"]


def test_manifest_cli(tmp_path):
    (tmp_path / "src" / "sub").mkdir(parents=True)
    (tmp_path / "src" / "a.txt").write_text("a\n")
    (tmp_path / "src" / "sub" / "b.txt").write_text("b\n")
    (tmp_path / "src" / ".git").mkdir()
    (tmp_path / "src" / ".git" / "config").write_text("[core]\n")
    done = cli("manifest", "./src/", cwd=tmp_path)
    data = json.loads(done.stdout)
    assert data["schema"] == manifest.SCHEMA
    assert data["sources"] == {"src": {
        "a.txt": "87428fc522803d31065e7bce3cf03fe475096631e5e07bbd7a0fde60c4cf25c7",  # sha256 of "a\n"
        "sub/b.txt": "0263829989b6fd954f72baaf2fc64bc2e2f01d692d4de72986ea808f6e99813f"}}
    bad = cli("manifest", "nowhere", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip() == "podcheck: error: source nowhere: no such file or directory"


def config(sage="required", user="", users=(), extra=()):
    return SimpleNamespace(attention=SimpleNamespace(sage=sage), pod=SimpleNamespace(user=user, users=list(users)),
                           image=SimpleNamespace(required_flags=list(extra)))


def test_required_flags_follow_the_config():
    assert entrypoint.required_flags(config()) == ["--use-sage-attention"]
    assert entrypoint.required_flags(config(sage="optional")) == []
    assert entrypoint.required_flags(config(sage="off", users=["alice"], extra=["--listen"])) == [
        "--output-directory", "--input-directory", "--temp-directory", "--user-directory", "--listen"]


def test_launch_lines_of_a_start_script():
    found = entrypoint.launches(STALE_START)
    assert [n for n, _ in found] == [7, 11]  # not the comment, not the echo
    assert found[0][1].startswith("python main.py --listen 0.0.0.0 --port 8188 --use-sage-attention 2>&1")
    assert entrypoint.missing_flags(found[1][1], ["--use-sage-attention"]) == ["--use-sage-attention"]
    dockerfile = 'CMD ["python", "main.py", "--listen", "0.0.0.0", "--use-sage-attention"]'
    assert entrypoint.launches(dockerfile) and not entrypoint.missing_flags(dockerfile, ["--use-sage-attention"])
    assert entrypoint.launches("comfy --workspace /ComfyUI launch -- --use-sage-attention")
    # read as ComfyUI's argparse reads them: a unique prefix counts, an ambiguous one or a later shell word does not
    assert not entrypoint.missing_flags("python -u main.py --use-sage --output-directory=/o", ["--use-sage-attention", "--output-directory"])
    assert entrypoint.missing_flags("python main.py --use-s", ["--use-sage-attention"]) == ["--use-sage-attention"]
    assert entrypoint.missing_flags("python main.py $ARGS | tee log --use-sage-attention", ["--use-sage-attention"])
    assert not entrypoint.missing_flags("python main.py --my-fork-flag", ["--my-fork-flag"])  # not ComfyUI's: literal
    assert not entrypoint.launches("python train_network.py --config main.py.toml")
