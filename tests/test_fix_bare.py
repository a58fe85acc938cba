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

import fixsim
import psutil
import pytest
import testinfra

from podcheck import config
from podcheck.fix.markers import shown
from podcheck.fix.registry import registry
from podcheck.fix.repair import Context
from podcheck.host.pod import Pod

pytestmark = pytest.mark.xdist_group("fix-bare")  # one pod, installed once, for the tests in order

#: What a finished install holds in the pod venv (an uninterrupted run and a crashed-then-resumed one alike).
END_PACKAGES = {"torch": "2.13.0+cpu", "sageattention": fixsim.SAGE_VERSION, "six": "1.17.0"}
PASS = "passed"
FIRST_RUN = {"ffmpeg": "unchanged", "venv": "changed", "torch": "changed", "comfyui": "changed", "sage": "changed",
             "isolation.user_dirs": "changed", "comfyui.launch": "changed", "comfyui.relaunch": "unchanged",
             "sync.start": "changed", "isolation.unlink": "unchanged", "sync.config": "unchanged",
             "memory.free": "unchanged"}


def packages(python: Path) -> dict[str, str]:
    done = subprocess.run([str(python), "-m", "pip", "list", "--format=json", "--disable-pip-version-check"],
                          capture_output=True, text=True, check=True)
    return {p["name"].lower(): p["version"] for p in json.loads(done.stdout)}


def expected_state(pod) -> dict:
    """The end state a finished install must have, from the pod's config alone: every repair's current
    inputs recorded in its marker, the packages, one ComfyUI running with sage."""
    cfg = config.load(pod.config_path)
    ctx = Context(pod=Pod(cfg, testinfra.get_host("local://")))
    inputs = {rid: shown(r.inputs(ctx)) for rid, r in registry().items()
              if rid in ("ffmpeg", "venv", "torch", "comfyui", "sage", "sync.start")}
    return {"packages": END_PACKAGES, "markers": sorted(inputs), "inputs": inputs, "comfyui_with_sage": [True]}


def end_state(pod) -> dict:
    """What must be the same after any successful first install: packages, the inputs recorded (markers of
    repairs without inputs only say when they last ran), ComfyUI running once with sage."""
    python = pod.workspace / "venv" / "bin" / "python"
    installed = packages(python)
    markers = {k: m for k, m in json.loads((pod.state_dir / "markers.json").read_text()).items() if m["fingerprint"]}
    inputs = {k: m["inputs"] for k, m in markers.items()}
    comfy = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
             if f"{pod.workspace}/ComfyUI/main.py" in (p.info["cmdline"] or [])]
    return {"packages": {k: installed.get(k) for k in END_PACKAGES}, "markers": sorted(markers), "inputs": inputs,
            "comfyui_with_sage": ["--use-sage-attention" in argv for argv in comfy]}


def _reads(call: str) -> bool:
    """A git call that only reads: comfyui.upstream's `ls-remote` and `rev-parse` / `merge-base`."""
    return call.startswith("git ls-remote ") or " rev-parse " in call or " merge-base " in call


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
    pod = fixsim.bare_pod(root)
    files = plant_user_files(pod)
    began = time.monotonic()
    run = pod.podcheck("--fix", "--json", "-")
    seconds = time.monotonic() - began
    yield pod, run, files, seconds
    fixsim.stop_pod(root)


def test_bare_pod_reaches_all_pass_with_one_fix(installed):
    pod, run, files, seconds = installed
    assert run.rc == 0, run.stdout + run.stderr
    before = {r["id"]: r for r in run.json["before"]}
    assert before["gpu.torch_build"]["status"] == "failed"
    assert "pod python not found" in before["gpu.torch_build"]["message"]
    # one root cause, one failure: no torch blocks what needs it (comfyui.installed through gpu.torch_set)
    assert before["comfyui.installed"]["blocked_by"] == "gpu.torch_build"
    assert before["comfyui.running"]["blocked_by"] == "gpu.torch_build"
    assert all(r["status"] in (PASS, "skipped") for r in run.json["results"]), run.stdout
    for check in ("gpu.torch_build", "attention.sage_import", "comfyui.installed", "comfyui.running",
                  "comfyui.launch_flags", "attention.sage_active", "isolation.user_dirs", "sync.running",
                  "sync.per_user"):
        assert run.status(check) == PASS, run.result(check)
    assert {r["id"]: r["status"] for r in run.json["repairs"]} == FIRST_RUN
    order = [r["id"] for r in run.json["repairs"]]
    assert order.index("torch") < order.index("comfyui") < order.index("comfyui.launch") < order.index("sync.start")
    assert end_state(pod) == expected_state(pod)
    assert_user_files(pod, files)
    print(f"\nfirst --fix on a bare pod: {seconds:.1f} s")


def test_second_fix_changes_nothing_and_runs_no_pip_or_git(installed, tmp_path):
    pod, *_ = installed
    shims, log = fixsim.shims(tmp_path)
    fixsim.log_python(pod.workspace / "venv" / "bin" / "python", log)
    run = pod.podcheck("--fix", "--json", "-", env={"PATH": f"{shims}:{os.environ['PATH']}"})
    assert run.rc == 0, run.stdout + run.stderr
    assert {r["id"]: r["status"] for r in run.json["repairs"]} == dict.fromkeys(FIRST_RUN, "unchanged")
    calls = log.read_text().splitlines() if log.exists() else []
    assert calls, "the shims saw nothing: the probe should have run the pod python"
    # git only as comfyui.upstream reads (ls-remote, rev-parse): nothing that writes
    assert not [c for c in calls if (c.startswith("git") and not _reads(c)) or "-m pip" in c], calls
    assert run.stderr == ""


def test_editing_requirements_reruns_comfyui_only(installed, tmp_path):
    pod, *_ = installed
    shims, log = fixsim.shims(tmp_path)
    fixsim.log_python(pod.workspace / "venv" / "bin" / "python", log)
    with open(pod.workspace / "ComfyUI" / "requirements.txt", "a") as fh:
        fh.write(f"{fixsim.TABULATE}\n")
    run = pod.podcheck("--fix", "--json", "-", env={"PATH": f"{shims}:{os.environ['PATH']}"})
    assert run.rc == 0, run.stdout + run.stderr
    statuses = {r["id"]: r["status"] for r in run.json["repairs"]}
    assert statuses.pop("comfyui") == "changed" and set(statuses.values()) == {"unchanged"}, run.json["repairs"]
    comfy = next(r for r in run.json["repairs"] if r["id"] == "comfyui")
    assert "tabulate" in comfy["message"] and not any(c.startswith("git") for c in comfy["commands"])
    calls = log.read_text().splitlines()
    assert [c for c in calls if "-m pip install" in c] and not [c for c in calls if c.startswith("git") and not _reads(c)]
    assert packages(pod.workspace / "venv" / "bin" / "python")["torch"] == "2.13.0+cpu"  # pinned


def test_a_dirty_checkout_is_never_touched(installed):
    pod, *_ = installed
    checkout = pod.workspace / "ComfyUI"
    with open(checkout / "requirements.txt", "a") as fh:
        fh.write("# a local note\n")  # a local change to a tracked file
    edited = (checkout / "requirements.txt").read_text()
    head = (checkout / ".git" / "HEAD").read_text()
    upstream = pod.root / "upstream-ComfyUI"
    (upstream / "NEWS").write_text("v2\n")
    fixsim.git(upstream, "add", "NEWS")
    fixsim.git(upstream, "commit", "-q", "-m", "v2")
    fixsim.git(upstream, "tag", "v2")
    pod.configure(comfyui={"ref": "v2"})
    run = pod.podcheck("--fix", "--json", "-", "--select", "comfyui.installed")
    assert run.rc == 0  # the checks still pass: the repair refused to move the checkout
    comfy = next(r for r in run.json["repairs"] if r["id"] == "comfyui")
    assert comfy["status"] == "failed"
    assert "[comfyui] ref changed from master to v2" in comfy["message"]
    assert "local changes in requirements.txt" in comfy["message"] and "leaves it untouched" in comfy["message"]
    assert (checkout / "requirements.txt").read_text() == edited and (checkout / ".git" / "HEAD").read_text() == head
    assert not (checkout / "NEWS").exists()
    fixsim.git(checkout, "checkout", "--", "requirements.txt")  # clean again: now it fast-forwards
    run = pod.podcheck("--fix", "--json", "-", "--select", "comfyui.installed")
    comfy = next(r for r in run.json["repairs"] if r["id"] == "comfyui")
    assert comfy["status"] == "changed" and "fast-forwarded" in comfy["message"], comfy
    assert (checkout / "NEWS").read_text() == "v2\n"


@pytest.mark.xdist_group("fix-crash")
def test_crash_at_many_points_then_fix_converges(tmp_path):
    pod = fixsim.bare_pod(tmp_path)
    files = plant_user_files(pod)
    progress = pod.state_dir / "fix-progress.json"
    # (repair to wait for, seconds into it, kill the whole session (a pod dying) or the fixer alone)
    points = [("venv", 0.3, True), ("torch", 2.0, False), ("comfyui", 0.2, True), ("sage", 0.2, False),
              ("comfyui.launch", 0.1, False)]
    kills = []
    try:
        for rid, delay, whole in points:
            fixer = subprocess.Popen([sys.executable, "-m", "podcheck", "--fix"], cwd=pod.root, start_new_session=True,
                                     env={**os.environ, "PODCHECK_CONFIG": str(pod.config_path)},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            seen = fixsim.wait_for(lambda: (fixsim.read_json(progress) or {}).get("current") == rid  # noqa: B023 - called here
                                   and (fixsim.read_json(progress) or {}).get("pid") == fixer.pid, timeout=120, step=0.02)  # noqa: B023
            if not seen:  # it got past this point already (the repair had nothing left to do)
                fixer.wait(180)
                continue
            time.sleep(delay)
            kills.append(rid)
            if whole:
                os.killpg(fixer.pid, signal.SIGKILL)
            else:
                fixer.send_signal(signal.SIGKILL)
            fixer.wait(10)
        assert len(kills) >= 4, f"the fixer was killed only during {kills}"
        run = pod.podcheck("--fix", "--json", "-")
        assert run.rc == 0, run.stdout + run.stderr
        assert end_state(pod) == expected_state(pod)  # what the uninterrupted run reaches too
        assert_user_files(pod, files)
        assert not (pod.state_dir / "fix.lock").exists()
        leftovers = subprocess.run(["pgrep", "-f", f"{pod.workspace}/venv/bin/python -m pip"], capture_output=True)
        assert leftovers.stdout == b"", "a dead fixer's pip still runs"
    finally:
        fixsim.stop_pod(tmp_path)
