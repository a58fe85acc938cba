"""`podcheck --fix --background`: the fast repairs run, slow ones (torch, ComfyUI's requirements, sage)
continue detached with their progress in state_dir; ComfyUI answers before sage is in, and is
restarted with --use-sage-attention once it is."""
from __future__ import annotations

import json
import time
import urllib.request

import fixsim


def answers(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=1) as resp:
            return json.loads(resp.read())
    except OSError:
        return None


def test_background_fix_returns_at_once_and_finishes_detached(tmp_path):
    pod = fixsim.layered_pod(tmp_path)  # torch is there already: the slow part here is ComfyUI and sage
    port = pod.settings["comfyui"]["port"]
    try:
        began = time.monotonic()
        run = pod.podcheck("--fix", "--background", "--json", "-")
        returned = time.monotonic() - began
        assert run.rc == 1, run.stderr  # ComfyUI is not there yet, and the exit code says so
        statuses = {r["id"]: (r["status"], r["message"]) for r in run.json["repairs"]}
        for rid in ("torch", "comfyui", "sage", "comfyui.launch"):
            assert statuses[rid] == ("skipped", "running in the background (see `podcheck status`)"), statuses
        assert statuses["isolation.user_dirs"][0] == "changed" and statuses["sync.start"][0] == "changed"
        assert "left to the background (pid" in run.stderr and "torch, comfyui, comfyui.launch, sage" in run.stderr
        first = fixsim.wait_for(lambda: answers(port), timeout=120, step=0.1)
        up = time.monotonic() - began
        assert first is not None, (pod.state_dir / "background.log").read_text()[-3000:]
        progress = pod.state_dir / "background.json"
        done = fixsim.wait_for(lambda: (fixsim.read_json(progress) or {}).get("state") == "done", timeout=120)
        assert done, (pod.state_dir / "background.log").read_text()[-3000:]
        steps = {s["id"]: s["status"] for s in fixsim.read_json(progress)["steps"]}
        assert steps["comfyui.launch"] == "changed" and steps["sage"] == "changed", steps
        assert steps["comfyui.relaunch"] == "changed", steps  # sage came after ComfyUI: restarted with the flag
        check = pod.podcheck("--json", "-")
        assert check.rc == 0, check.stdout
        assert "--use-sage-attention" in answers(port)["system"]["argv"]
        status = pod.podcheck("status")
        assert "background run: done" in status.stdout and "log " in status.stdout
        print(f"\n--fix --background returned after {returned:.1f} s; ComfyUI answered after {up:.1f} s")
    finally:
        fixsim.stop_pod(tmp_path)
