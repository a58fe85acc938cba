"""A bare simulated pod taken to all-pass by `podcheck --fix`, with real pip, venv and git; then the
second --fix (every repair unchanged, no pip or git run: PATH and interpreter shims log every call);
crash safety (kill -9 at many points of a first install); two fixers at once; --background."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import fixsim

#: What a finished install holds in the pod venv (an uninterrupted run and a crashed-then-resumed one alike).
END_PACKAGES = {"torch": "2.13.0+cpu", "sageattention": fixsim.SAGE_VERSION}
PASS = "passed"


def packages(python: Path) -> dict[str, str]:
    done = subprocess.run([str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                          capture_output=True, text=True, check=True)
    return {p["name"].lower(): p["version"] for p in json.loads(done.stdout)}


def end_state(pod) -> dict:
    """What must be the same after any successful first install: packages, markers, check verdicts."""
    python = pod.workspace / "venv" / "bin" / "python"
    installed = packages(python)
    markers = json.loads((pod.state_dir / "markers.json").read_text())
    inputs = json.dumps({k: m["inputs"] for k, m in markers.items()}, sort_keys=True).replace(str(pod.root), "<root>")
    return {"packages": {k: installed.get(k) for k in END_PACKAGES}, "markers": sorted(markers),
            "inputs": json.loads(inputs)}


def plant_user_files(pod) -> dict[str, bytes]:
    files = {"output/alice/ComfyUI_00001_.png": b"\x89PNG alice", "input/alice/ref.jpg": b"jpeg",
             "notes.txt": b"do not lose me"}
    for rel, data in files.items():
        path = pod.workspace / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def assert_user_files(pod, files):
    for rel, data in files.items():
        assert (pod.workspace / rel).read_bytes() == data, f"user file {rel} lost"


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """A bare pod after one uninterrupted `podcheck --fix` (shared by the tests that build on it)."""
    root = tmp_path_factory.mktemp("bare")
    pod = fixsim.bare_pod(root, comfyui=False)
    files = plant_user_files(pod)
    began = time.monotonic()
    run = pod.podcheck("--fix", "--json", "-")
    seconds = time.monotonic() - began
    return pod, run, files, seconds


def test_bare_pod_reaches_all_pass_with_one_fix(installed):
    pod, run, files, seconds = installed
    assert run.rc == 0, run.stdout + run.stderr
    before = {r["id"]: r for r in run.json["before"]}
    assert before["gpu.torch_build"]["status"] == "failed"
    assert "pod python not found" in before["gpu.torch_build"]["message"]
    assert all(r["status"] in (PASS, "skipped") for r in run.json["results"])
    assert run.status("gpu.torch_build") == PASS and run.status("attention.sage_import") == PASS
    statuses = {r["id"]: r["status"] for r in run.json["repairs"]}
    assert statuses == {"ffmpeg": "unchanged", "venv": "changed", "torch": "changed", "sage": "changed"}
    assert end_state(pod)["packages"] == END_PACKAGES
    assert_user_files(pod, files)
    print(f"\nfirst --fix on a bare pod (venv, torch, sage): {seconds:.1f} s")


def test_second_fix_changes_nothing_and_runs_no_pip_or_git(installed, tmp_path):
    pod, first, files, _ = installed
    shims, log = fixsim.shims(tmp_path)
    fixsim.log_python(pod.workspace / "venv" / "bin" / "python", log)
    run = pod.podcheck("--fix", "--json", "-", env={"PATH": f"{shims}:{os.environ['PATH']}"})
    assert run.rc == 0, run.stdout + run.stderr
    assert {r["id"]: r["status"] for r in run.json["repairs"]} == dict.fromkeys(
        ["ffmpeg", "venv", "torch", "sage"], "unchanged")
    calls = log.read_text().splitlines() if log.exists() else []
    assert calls, "the shims saw nothing: the probe should have run the pod python"
    assert not [c for c in calls if c.startswith("git") or "-m pip" in c], calls
    assert run.stderr == ""


def test_crash_at_many_points_then_fix_converges(installed, tmp_path):
    reference = end_state(installed[0])
    pod = fixsim.bare_pod(tmp_path, comfyui=False)
    files = plant_user_files(pod)
    progress = pod.state_dir / "fix-progress.json"
    # (repair to wait for, seconds into it, kill the whole session (a pod dying) or the fixer alone)
    points = [("venv", 0.4, True), ("torch", 2.0, False), ("sage", 0.2, True)]
    kills = []
    for rid, delay, whole in points:
        fixer = subprocess.Popen([sys.executable, "-m", "podcheck", "--fix"], cwd=pod.root, start_new_session=True,
                                 env={**os.environ, "PODCHECK_CONFIG": str(pod.config_path)},
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        seen = fixsim.wait_for(lambda: (fixsim.read_json(progress) or {}).get("current") == rid
                               and (fixsim.read_json(progress) or {}).get("pid") == fixer.pid, timeout=90, step=0.02)
        if not seen:  # it got past this point already (the repair had nothing left to do)
            fixer.wait(120)
            continue
        time.sleep(delay)
        kills.append(rid)
        if whole:
            os.killpg(fixer.pid, signal.SIGKILL)
        else:
            fixer.send_signal(signal.SIGKILL)
        fixer.wait(10)
    assert len(kills) >= 2, f"the fixer was killed only during {kills}"
    run = pod.podcheck("--fix", "--json", "-")
    assert run.rc == 0, run.stdout + run.stderr
    assert end_state(pod) == reference
    assert_user_files(pod, files)
    assert "took over the fix lock" in run.stderr or not (pod.state_dir / "fix.lock").exists()
    assert not (pod.state_dir / "fix.lock").exists()
    leftovers = subprocess.run(["pgrep", "-f", f"{pod.workspace}/venv/bin/python -m pip"], capture_output=True)
    assert leftovers.stdout == b"", "a dead fixer's pip still runs"
