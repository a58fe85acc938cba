"""The remedy is data on the check: every renderer prints the repair or remedy from it, with a
closing "to fix" part, and no message carries a hand-typed "(repair: X)"."""
from __future__ import annotations

import json
import re
from pathlib import Path

from podcheck.reports.render import render_checks
from podcheck.results import CheckResult, Report

REPO = Path(__file__).resolve().parent.parent


def failing_report() -> Report:
    return Report(host="pod-a", profile="runtime", results=[
        CheckResult("gpu.driver", "gpu", "failed", "no usable NVIDIA GPU", remedy="pick a GPU pod"),
        CheckResult("gpu.torch_build", "gpu", "failed", "torch 2.13.0+cpu is a CPU build", repair="torch"),
        CheckResult("system.ffmpeg", "system", "failed", "ffmpeg not found", repair="ffmpeg"),
        CheckResult("pod.workspace", "pod", "passed", "ok", remedy="attach the volume"),
    ])


def test_table_md_html_junit_print_the_repairs_and_remedies():
    report = [failing_report()]
    table = render_checks("table", report)
    assert re.search(r"^to fix:\n  podcheck --fix\s+repairs torch, ffmpeg\n  gpu.driver\s+pick a GPU pod$", table, re.M)
    assert "attach the volume" not in table, "a passing check's remedy is not shown"
    md = render_checks("md", report)
    assert "## To fix" in md and "- `podcheck --fix`: repairs torch, ffmpeg" in md and "- `gpu.driver`: pick a GPU pod" in md
    html = render_checks("html", report)
    assert "<code>podcheck --fix</code>: repairs torch, ffmpeg" in html and "<code>gpu.driver</code>: pick a GPU pod" in html
    junit = render_checks("junit", report)
    assert "to fix: podcheck --fix (repair torch)" in junit and "to fix: pick a GPU pod" in junit


def test_json_carries_repair_and_remedy_per_result():
    doc = json.loads(render_checks("json", [failing_report()]))
    by_id = {r["id"]: r for r in doc["results"]}
    assert by_id["gpu.torch_build"]["repair"] == "torch" and by_id["gpu.driver"]["remedy"] == "pick a GPU pod"


def test_a_healthy_report_has_nothing_to_fix():
    ok = Report(host="pod-a", profile="runtime", results=[CheckResult("pod.workspace", "pod", "passed", "ok")])
    assert "to fix" not in render_checks("table", [ok]).lower()


def test_no_check_message_types_its_repair_by_hand():
    typed = [f"{p.name}:{n}" for p in (REPO / "checks").glob("*.py") for n, line in enumerate(p.read_text().splitlines(), 1)
             if re.search(r"\(repairs?: ", line)]
    assert typed == []
