"""The terminal table: checks grouped by area, then a summary line that names the root causes."""
from __future__ import annotations

import os
import sys
from itertools import groupby
from typing import TextIO

from podcheck.results import CheckResult, Report

LABELS = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP", "error": "ERROR"}
COLOURS = {"passed": "32", "failed": "31", "skipped": "33", "error": "35"}


def use_colour(stream: TextIO) -> bool:
    return stream.isatty() and os.environ.get("NO_COLOR") is None and os.environ.get("TERM") != "dumb"


def render(report: Report, quiet: bool = False, verbose: bool = False, colour: bool = False) -> str:
    """The table for one host; `quiet` keeps failures only, `verbose` adds durations and descriptions."""
    rows = [r for r in report.results if not quiet or r.status in ("failed", "error")]
    width = max((len(r.id) for r in rows), default=0)
    lines = [] if quiet else [f"podcheck: {report.host}, profile {report.profile}, {report.duration_s:.1f} s"]
    lines += repairs_section(report)
    for area, results in groupby(rows, key=lambda r: r.area):  # rows come in catalogue order
        lines.append(area)
        for r in results:
            lines.append(_row(r, width, verbose, colour))
    lines += to_fix_section(report)
    lines.append(summary(report))
    return "\n".join(lines) + "\n"


def repairs_section(report: Report) -> list[str]:
    """After a --fix: each repair with its outcome, then the before -> after counts."""
    if report.before is None:
        return []
    width = max((len(r.id) for r in report.repairs), default=0)
    lines = ["repairs"] if report.repairs else []
    for r in report.repairs:
        took = f"  [{r.duration_s:.1f} s]" if r.duration_s >= 0.05 else ""
        lines.append(f"  {r.status.upper():<9}  {r.id:<{width}}  {r.message}{took}")
    lines.append(f"before: {_counts(report.before)}  ->  after: {_counts(report.results)}")
    return lines


def to_fix(report: Report) -> list[tuple[str, str]]:
    """(what, how) for the failures, kube-bench style: one `podcheck --fix` line naming the repairs,
    then each failure without a repair with its remedy. Taken from the checks' data, never typed twice."""
    repairs = list(dict.fromkeys(r.repair for r in report.failures if r.repair))
    rows = [("podcheck --fix", "repairs " + ", ".join(repairs))] if repairs else []
    rows += [(r.id, r.remedy) for r in report.failures if not r.repair and r.remedy]
    return rows


def to_fix_section(report: Report) -> list[str]:
    rows = to_fix(report)
    width = max((len(what) for what, _ in rows), default=0)
    return ["to fix:", *(f"  {what:<{width}}  {how}" for what, how in rows)] if rows else []


def _counts(results: list[CheckResult]) -> str:
    counts = {s: sum(r.status == s for r in results) for s in ("failed", "error", "passed", "skipped")}
    return ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no checks"


def _row(r: CheckResult, width: int, verbose: bool, colour: bool) -> str:
    label = f"{LABELS[r.status]:<5}"
    if colour:
        label = f"\033[{COLOURS[r.status]}m{label}\033[0m"
    extra = f"  [{r.duration_s:.2f} s]" if verbose else ""
    message = r.message or (r.description if verbose else "")
    return f"  {label}  {r.id:<{width}}  {message}{extra}".rstrip()


def summary(report: Report) -> str:
    """'2 failed, 5 passed, 3 skipped. Root causes: gpu.driver, pod.workspace'."""
    counts = report.summary
    parts = [f"{counts[s]} {s}" for s in ("failed", "error", "passed", "skipped") if counts[s]]
    line = ", ".join(parts) or "no checks ran"
    causes = [r.id for r in report.failures]
    if causes:
        line += f". Root cause{'s' if len(causes) > 1 else ''}: {', '.join(causes)}"
    else:
        line += ". All applicable checks passed."
    return line


def write(report: Report, stream: TextIO = sys.stdout, **kw) -> None:
    stream.write(render(report, colour=use_colour(stream), **kw))
