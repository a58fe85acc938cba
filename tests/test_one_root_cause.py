"""One root cause, one failure: a check that does not apply pulls in no prerequisites, and a check whose
prerequisite failed is blocked by it, not failed a second time (on a real CPU pod, with no ComfyUI)."""
from __future__ import annotations


def test_select_attention_with_sage_off_reports_no_comfyui_failure(cpu_pod):
    run = cpu_pod.podcheck("--json", "-", "--select", "attention")
    failed = {r["id"]: r["message"] for r in run.json["results"] if r["status"] in ("failed", "error")}
    assert not failed, failed  # before: comfyui.running failed, pulled in by attention.sage_active
    assert run.status("attention.sage_active") == "skipped"
    assert "sage is off" in run.result("attention.sage_active")["message"]


def test_comfyui_running_is_blocked_by_a_failing_comfyui_installed(cpu_pod):
    run = cpu_pod.podcheck("--json", "-", "--select", "comfyui")
    assert run.status("comfyui.installed") == "failed"
    running = run.result("comfyui.running")
    assert running["blocked_by"] == "comfyui.installed", running  # before: failed on its own ("no ComfyUI runs")
