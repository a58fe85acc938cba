"""Markdown for a GitHub issue: summary and failures first, then every check, then the diagnostic
sections; long parts (logs, configs, listings) folded in <details>."""
from __future__ import annotations

import re
from typing import Any

from podcheck.reports.terminal import LABELS, summary, to_fix

from podcheck import __version__
from podcheck.results import Report

ICONS = {"passed": "✅", "failed": "❌", "skipped": "⏭️", "error": "💥"}


def render(reports: list[Report], doc: Any = None) -> str:
    """`reports` (check results per host); `doc` is a podcheck.services.diagnostics.Diagnostics, or None."""
    host = doc.host if doc is not None else ", ".join(r.host for r in reports)
    out = [f"# podcheck report: {host}", ""]
    if doc is not None:
        out += [f"podcheck {_version()} · started {_when(doc.started)} · {doc.duration_s:.1f} s", ""]
        if not doc.complete:
            out += [f"> **Incomplete:** still collecting {doc.collecting} when this was written.", ""]
    out += ["## Summary", ""]
    for report in reports:
        out.append(f"- **{report.host}** ({report.profile}): {_inline(summary(report))}")
    if not reports:
        out.append("- no check results")
    out.append("")
    failures = [(rep, r) for rep in reports for r in rep.failures]
    if failures:
        out += ["## Failures", ""]
        for rep, r in failures:
            where = f" on {rep.host}" if len(reports) > 1 else ""
            out.append(f"- {ICONS[r.status]} **{r.id}**{where}: {_inline(r.message)}")
        out.append("")
        out += ["## To fix", ""]
        for rep in reports:
            where = f" on {rep.host}" if len(reports) > 1 else ""
            out += [f"- `{what}`{where}: {_inline(how)}" for what, how in to_fix(rep)]
        out.append("")
    for report in reports:
        out += [f"## Checks{f' on {report.host}' if len(reports) > 1 else ''}", "",
                "| status | check | message |", "|---|---|---|"]
        for r in report.results:
            out.append(f"| {ICONS[r.status]} {LABELS[r.status]} | `{r.id}` | {_cell(r.message)} |")
        out.append("")
    for section in doc.ordered() if doc is not None else []:
        if section.key == "checks" and not section.missing:
            continue  # shown above
        out += [f"## {section.title}", ""]
        if section.rows:
            out += ["| | |", "|---|---|"]
            out += [f"| {_cell(k)} | {_cell(_show(v))} |" for k, v in section.rows.items()]
            out.append("")
        for line in section.missing:
            out.append(f"- ⚠️ {_inline(line)}")
        if section.missing:
            out.append("")
        for name, text in section.texts.items():
            out += ["<details>", f"<summary>{_escape_html(name)}</summary>", "", _fenced(text), "", "</details>", ""]
    return "\n".join(out).rstrip() + "\n"


def _version() -> str:
    return __version__


def _when(ts: float) -> str:
    import time
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "–" if value is None else str(value)


def _inline(text: str) -> str:
    """One line of prose: no line breaks, no accidental HTML, emphasis or links."""
    return _escape_html(re.sub(r"([\\`*_\[\]])", r"\\\1", " ".join(str(text).split())))


def _cell(text: str) -> str:
    return _inline(text).replace("|", "\\|") or " "


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fenced(text: str) -> str:
    """A fenced code block longer than any backtick run inside `text`."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}text\n{text.rstrip()}\n{fence}"
