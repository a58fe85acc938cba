"""`podcheck --fix` through the real CLI on simulated pods: the ffmpeg repair (into a tmp prefix, and the
real apt-get path), idempotence, reset, dry-run, --safe-only, the bounded wait for another fixer, status."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

import fixsim
import podsim
from podcheck import config
from podcheck.fix.fixer import run_one


@pytest.fixture
def cpu_pod(cpu_pod):
    """The healthy CPU pod, with an ffmpeg installer that runs no apt-get (its own test does that)."""
    return cpu_pod.configure(fix={"ffmpeg_install": ["true"]})


def ffmpeg_gone(pod, tmp_path):
    """A PATH without ffmpeg, and an install command that puts it into a tmp prefix on that PATH."""
    prefix = tmp_path / "prefix"
    farm = podsim.path_without("ffmpeg", root=tmp_path)
    pod.configure(fix={"ffmpeg_install": ["install", "-D", "-m", "755", shutil.which("ffmpeg"), f"{prefix}/bin/ffmpeg"]})
    return {"PATH": f"{prefix}/bin:{farm}"}, prefix / "bin" / "ffmpeg"


#: The issue-2 checks: the repairs here are ffmpeg, venv, torch and sage (the rest have their own tests).
CORE = ("--select", "pod,system,gpu,attention.sage_import")


def repairs(run):
    return {r["id"]: r for r in run.json["repairs"]}


def test_ffmpeg_repair_then_idempotent_then_reset(cpu_pod, tmp_path):
    env, installed = ffmpeg_gone(cpu_pod, tmp_path)
    first = cpu_pod.podcheck("--fix", *CORE, "--json", "-", env=env)
    assert first.rc == 0, first.stdout + first.stderr
    before = {r["id"]: r["status"] for r in first.json["before"]}
    assert before["system.ffmpeg"] == "failed" and first.status("system.ffmpeg") == "passed"
    fixed = repairs(first)
    assert fixed["ffmpeg"]["status"] == "changed" and fixed["ffmpeg"]["message"].startswith("installed ffmpeg 5")
    assert fixed["ffmpeg"]["commands"] == [f"install -D -m 755 {shutil.which('ffmpeg')} {installed}"]
    assert installed.is_file()
    assert fixed["torch"]["status"] == "unchanged" and "satisfies torch" in fixed["torch"]["message"]
    assert "[1/3] ffmpeg (safe): system.ffmpeg failed" in first.stderr

    second = cpu_pod.podcheck("--fix", *CORE, "--json", "-", env=env)
    assert second.rc == 0
    assert {r["status"] for r in second.json["repairs"]} == {"unchanged"}
    assert all(r["commands"] == [] for r in second.json["repairs"])
    assert second.stderr == ""  # nothing due: no lock, no progress lines

    status = cpu_pod.podcheck("status", env=env)
    assert status.rc == 0 and "markers: 3" in status.stdout and "fix lock: free" in status.stdout
    assert "last --fix:" in status.stdout and "ffmpeg changed" in status.stdout

    reset = cpu_pod.podcheck("reset", "ffmpeg", env=env)
    assert reset.rc == 0 and reset.stdout.strip() == "forgot the markers of ffmpeg"
    again = cpu_pod.podcheck("--fix", *CORE, "--json", "-", env=env)
    redone = repairs(again)["ffmpeg"]
    assert redone["status"] == "unchanged" and "was already installed" in redone["message"]
    assert redone["commands"], "reset makes the next --fix run the repair again"


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("apt-get") or not shutil.which("ffmpeg"),
                    reason="needs root, apt-get and an installed ffmpeg (CI installs it)")
def test_ffmpeg_repair_runs_the_real_apt_get_install(tmp_path):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    cfg = config.load(env={"PODCHECK_WORKSPACE": str(workspace), "HOME": str(tmp_path)})
    result = run_one(cfg, "ffmpeg")
    assert result.status == "unchanged", result.message
    assert result.message.startswith("ffmpeg 5") and "apt-get -o DPkg::Lock::Timeout=120 install -y -q ffmpeg" in result.message
    assert result.commands == ["apt-get -o DPkg::Lock::Timeout=120 install -y -q ffmpeg"]
    marker = json.loads((workspace / ".podcheck" / "markers.json").read_text())["ffmpeg"]
    assert marker["changed_at"] is None and marker["verified_at"] > time.time() - 600


def test_dry_run_prints_the_plan_and_changes_nothing(tmp_path):
    pod = fixsim.bare_pod(tmp_path, comfyui=False)
    env, installed = ffmpeg_gone(pod, tmp_path)
    before = fixsim.tree(tmp_path)
    run = pod.podcheck("--fix", *CORE, "--dry-run", "--json", "-", env=env)
    assert run.rc == 1, run.stderr
    plan = repairs(run)
    assert list(plan) == ["ffmpeg", "venv", "torch", "sage"]
    assert all(r["status"] == "skipped" and r["message"].startswith("dry run: would run: ") for r in plan.values())
    python = str(pod.workspace / "venv" / "bin" / "python")
    assert plan["venv"]["commands"] == [f"{podsim.BASE_PYTHON} -m venv {pod.workspace / 'venv'}"]
    assert plan["torch"]["commands"][0].startswith(f"{python} -m pip install --disable-pip-version-check --no-input "
                                                   "torch==2.13.0 --no-index --find-links")
    assert "  3. torch [replaces-packages, slow] gpu.torch_build failed:" in run.stderr
    assert fixsim.tree(tmp_path) == before and not installed.exists()

    safe = pod.podcheck("--fix", *CORE, "--dry-run", "--safe-only", "--json", "-", env=env)
    skips = {rid: r["message"] for rid, r in repairs(safe).items()}
    assert skips["ffmpeg"].startswith("dry run: would run") and skips["venv"].startswith("dry run: would run")
    assert skips["torch"] == "dry run: --safe-only: its blast radius is replaces-packages"
    assert skips["sage"] == "dry run: --safe-only: its blast radius is replaces-packages"
    assert fixsim.tree(tmp_path) == before


def test_fix_options_need_fix_and_reset_knows_the_repair_ids(cpu_pod):
    for args in (["--dry-run"], ["--safe-only"], ["--background"]):
        run = cpu_pod.podcheck(*args)
        assert run.rc == 2 and run.stderr.strip() == (
            "podcheck: error: --dry-run, --safe-only and --background apply only with --fix")
    run = cpu_pod.podcheck("reset", "torch", "nosuch")
    assert run.rc == 2 and run.stderr.startswith("podcheck: error: unknown repair id nosuch (known: ffmpeg, venv, torch")


def test_a_second_fixer_waits_for_the_first_then_gives_up_with_a_clear_message(cpu_pod, tmp_path):
    env, installed = ffmpeg_gone(cpu_pod, tmp_path)
    cpu_pod.configure(fix={"lock_wait_seconds": 1.0})
    lock = cpu_pod.workspace / ".podcheck" / "fix.lock"
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"token": "a" * 32, "host": "pod-b", "pid": 4242, "started": time.time(),
                                "heartbeat": time.time() + 3600, "lease_s": 120, "what": "podcheck --fix"}))
    run = cpu_pod.podcheck("--fix", *CORE, "--json", "-", env=env)
    assert run.rc == 1
    assert "waiting: podcheck --fix (pid 4242 on pod-b, since" in run.stderr
    assert "still holds the fix lock after 1 s; nothing was repaired" in run.stderr
    assert repairs(run)["ffmpeg"]["status"] == "skipped" and not installed.exists()
    assert json.loads(lock.read_text())["host"] == "pod-b"


def test_legacy_markers_are_hints_migrated_and_verified(cpu_pod):
    legacy = cpu_pod.workspace / ".install_markers"
    legacy.mkdir()
    for name in ("comfyui_core", "ffmpeg_source", "custom_nodes", "sageattention"):
        (legacy / name).write_text("installed 2025-06-01\n")
    state_env = cpu_pod.workspace / "runpodTools" / "state.env"
    state_env.parent.mkdir()
    state_env.write_text("DONE_COMFYUI_REQUIREMENTS=1\nexport DONE_TORCH=1\nDONE_CUSTOM_NODES=1\n")
    run = cpu_pod.podcheck("--fix", *CORE, "--json", "-")
    assert run.rc == 0, run.stdout + run.stderr
    assert f"[3/3] torch (replaces-packages, slow): recorded by legacy: {state_env}: DONE_TORCH=1, inputs unknown" \
        in run.stderr
    markers = json.loads((cpu_pod.state_dir / "markers.json").read_text())
    assert set(markers) == {"comfyui", "ffmpeg", "sage", "torch", "venv"}  # custom nodes are not podcheck's
    # verified by running the repair (its check applies): a fingerprint now, the hint kept
    assert markers["ffmpeg"]["fingerprint"] and markers["ffmpeg"]["hint"] == f"legacy: {legacy}/ffmpeg_source"
    assert markers["torch"]["fingerprint"] and markers["torch"]["source"] == "podcheck"
    # no check of this pod judges them (sage is off, no ComfyUI check here): hints, never trusted as done
    assert markers["sage"]["fingerprint"] is None and markers["sage"]["source"] == f"legacy: {legacy}/sageattention"
    assert markers["comfyui"]["source"] == f"legacy: {legacy}/comfyui_core"
    assert sorted(p.name for p in legacy.iterdir()) == ["comfyui_core", "custom_nodes", "ffmpeg_source", "sageattention"]
    status = cpu_pod.podcheck("status")
    assert f"(legacy: {legacy}/sageattention, not verified yet)" in status.stdout
    assert f"(migrated from legacy: {legacy}/ffmpeg_source)" in status.stdout


def test_two_fixers_at_once_one_waits_and_the_state_stays_valid(cpu_pod, tmp_path):
    env, installed = ffmpeg_gone(cpu_pod, tmp_path)
    slow = cpu_pod.settings["fix"]["ffmpeg_install"]
    cpu_pod.configure(fix={"ffmpeg_install": ["sh", "-c", 'sleep 2 && exec "$@"', "sh", *slow]})
    full = {**os.environ, "PODCHECK_CONFIG": str(cpu_pod.config_path), **env}
    procs = [subprocess.Popen([sys.executable, "-m", "podcheck", "--fix", *CORE, "--json", "-"], cwd=cpu_pod.root, env=full,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    waited = [i for i, (_, err) in enumerate(outs) if "waiting: podcheck --fix (pid" in err]
    assert len(waited) == 1, outs
    first, second = 1 - waited[0], waited[0]
    assert f"(pid {procs[first].pid} on {os.uname().nodename}" in outs[second][1]
    ran = {r["id"]: r["status"] for r in json.loads(outs[first][0])["repairs"]}
    after_wait = {r["id"]: r["status"] for r in json.loads(outs[second][0])["repairs"]}
    assert ran["ffmpeg"] == "changed" and after_wait["ffmpeg"] == "unchanged"  # it looked again after waiting
    assert installed.is_file()
    state = cpu_pod.state_dir
    for name in ("markers.json", "fix-progress.json", "last-fix.json"):
        json.loads((state / name).read_text())
    assert not list(state.glob("*.tmp")) and not list(state.glob(".*.tmp")) and not (state / "fix.lock").exists()
