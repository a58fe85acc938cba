"""The fleet view: hosts x areas, one cell per area (pass / fail / blocked / unreachable), each
failing cell naming its root cause, and the failing root causes counted across the fleet.

`grid()` is the data (also the `fleet` object of the JSON); `render_*` draw it for the terminal,
Markdown and a self-contained HTML page (inline CSS, nothing loaded from outside).
"""
from __future__ import annotations

import json
from collections import Counter
from html import escape
from typing import Any

from podcheck.results import SCHEMA, Report

PASS, FAIL, BLOCKED, SKIP, UNREACHABLE = "pass", "fail", "blocked", "skip", "unreachable"
LABELS = {PASS: "pass", FAIL: "FAIL", BLOCKED: "blocked", SKIP: "-", UNREACHABLE: "UNREACHABLE"}


def _cell(report: Report, area: str) -> dict[str, Any]:
    if report.unreachable:
        return {"status": UNREACHABLE, "causes": [], "message": report.unreachable}
    results = [r for r in report.results if r.area == area]
    failing = [r for r in results if r.status in ("failed", "error") and not r.blocked_by]
    if failing:
        return {"status": FAIL, "causes": [r.id for r in failing], "message": failing[0].message}
    blocked = sorted({r.blocked_by for r in results if r.blocked_by})
    if blocked:
        return {"status": BLOCKED, "causes": blocked, "message": f"blocked by {', '.join(blocked)}"}
    if any(r.status == "passed" for r in results):
        return {"status": PASS, "causes": [], "message": ""}
    return {"status": SKIP, "causes": [], "message": results[0].message if results else "no check"}


def grid(reports: list[Report]) -> dict[str, Any]:
    """{summary, areas, hosts: [{host, state, cells}], causes: [{id, pods, hosts}]}."""
    areas = sorted({r.area for rep in reports for r in rep.results})
    hosts: list[dict[str, Any]] = []
    causes: Counter[str] = Counter()
    who: dict[str, list[str]] = {}
    for rep in reports:
        state = "unreachable" if rep.unreachable else ("passed" if rep.ok else "failed")
        cells = {area: _cell(rep, area) for area in areas}
        hosts.append({"host": rep.host, "state": state, "cells": cells,
                      **({"unreachable": rep.unreachable} if rep.unreachable else {})})
        roots = {r.id for r in rep.failures if not r.blocked_by} if not rep.unreachable else {"unreachable"}
        for root in roots:
            causes[root] += 1
            who.setdefault(root, []).append(rep.host)
    states = Counter(h["state"] for h in hosts)
    return {"summary": {"pods": len(reports), "passed": states["passed"], "failed": states["failed"],
                        "unreachable": states["unreachable"]},
            "areas": areas, "hosts": hosts,
            "causes": [{"id": cid, "pods": n, "hosts": who[cid]} for cid, n in causes.most_common()]}


def _headline(g: dict[str, Any]) -> str:
    s = g["summary"]
    return (f"{s['pods']} pod{'s' if s['pods'] != 1 else ''}: {s['passed']} passed, {s['failed']} failed, "
            f"{s['unreachable']} unreachable")


def _cause_lines(g: dict[str, Any]) -> list[str]:
    return [f"{c['id']}: {c['pods']} pod{'s' if c['pods'] != 1 else ''} ({', '.join(c['hosts'])})" for c in g["causes"]]


def _label(cell: dict[str, Any]) -> str:
    label = LABELS[cell["status"]]
    return f"{label} {','.join(cell['causes'])}" if cell["status"] in (FAIL, BLOCKED) else label


def render_table(reports: list[Report], quiet: bool = False) -> str:
    """Plain text for the terminal."""
    g = grid(reports)
    rows = [h for h in g["hosts"] if not quiet or h["state"] != "passed"]
    head = ["host", *g["areas"]]
    body = [[h["host"], *[_label(h["cells"][a]) for a in g["areas"]]] for h in rows]
    widths = [max(len(str(r[i])) for r in [head, *body]) for i in range(len(head))]
    out = [f"podcheck fleet: {_headline(g)}"]
    for r in [head, *body]:
        out.append("  ".join(f"{c:<{w}}" for c, w in zip(r, widths)).rstrip())
    gone = [h for h in g["hosts"] if h["state"] == "unreachable"]
    if gone:
        out.append("unreachable:")
        out += [f"  {h['host']}: {h['unreachable']}" for h in gone]
    fixed = [rep for rep in reports if rep.before is not None]
    if fixed:
        out.append("repairs:")
        out += [f"  {rep.host}: {changes(rep)}" for rep in fixed]
    if g["causes"]:
        out.append("root causes across the fleet:")
        out += [f"  {line}" for line in _cause_lines(g)]
    else:
        out.append("All reached pods passed every applicable check.")
    return "\n".join(out) + "\n"


def render_md(reports: list[Report]) -> str:
    g = grid(reports)
    out = ["# podcheck fleet", "", f"**{_headline(g)}**", "",
           "| host | " + " | ".join(g["areas"]) + " |", "|---|" + "---|" * len(g["areas"])]
    for h in g["hosts"]:
        cells = [_md(_label(h["cells"][a]) if h["cells"][a]["status"] != UNREACHABLE else "UNREACHABLE")
                 for a in g["areas"]]
        out.append(f"| `{_md(h['host'])}` | " + " | ".join(cells) + " |")
    out.append("")
    gone = [h for h in g["hosts"] if h["state"] == "unreachable"]
    if gone:
        out += ["## Unreachable", ""] + [f"- `{_md(h['host'])}`: {_md(h['unreachable'])}" for h in gone] + [""]
    if g["causes"]:
        out += ["## Root causes across the fleet", ""] + [f"- {_md(line)}" for line in _cause_lines(g)] + [""]
    return "\n".join(out)


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


CSP = "default-src 'none'; style-src 'unsafe-inline'"
STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:90rem;padding:0 1rem;color:#1f2328}
table{border-collapse:collapse;margin:.75rem 0}td,th{border:1px solid #d1d9e0;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}td.pass{background:#dafbe1}td.fail{background:#ffebe9;font-weight:600}
td.blocked{background:#fff8c5}td.unreachable{background:#d0d7de;font-weight:600}td.skip{color:#59636e}
.ok{color:#1a7f37}.bad{color:#cf222e}small{display:block;font-weight:400;color:#59636e}
"""


def render_html(reports: list[Report], refresh: int | None = None) -> str:
    """One page, inline CSS only; `refresh` seconds adds a meta refresh (the serve status page)."""
    g = grid(reports)
    head = "".join(f"<th>{escape(a)}</th>" for a in g["areas"])
    rows = []
    for h in g["hosts"]:
        cells = []
        for a in g["areas"]:
            c = h["cells"][a]
            detail = f"<small>{escape(', '.join(c['causes']))}</small>" if c["causes"] else ""
            title = f' title="{escape(c["message"])}"' if c["message"] else ""
            cells.append(f'<td class="{c["status"]}"{title}>{escape(LABELS[c["status"]])}{detail}</td>')
        rows.append(f'<tr><th><code>{escape(h["host"])}</code></th>{"".join(cells)}</tr>')
    gone = "".join(f"<li><code>{escape(h['host'])}</code>: {escape(h['unreachable'])}</li>"
                   for h in g["hosts"] if h["state"] == "unreachable")
    causes = "".join(f"<li>{escape(line)}</li>" for line in _cause_lines(g))
    ok = not g["causes"]
    meta = f'<meta http-equiv="refresh" content="{int(refresh)}">' if refresh else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f'<meta http-equiv="Content-Security-Policy" content="{CSP}">{meta}'
            f"<title>podcheck fleet</title><style>{STYLE}</style></head>\n<body>\n"
            f'<h1>podcheck fleet</h1><p id="summary" class="{"ok" if ok else "bad"}"><strong>{escape(_headline(g))}</strong></p>\n'
            f'<table id="fleet"><tr><th>host</th>{head}</tr>{"".join(rows)}</table>\n'
            + (f"<h2>Unreachable</h2><ul id=\"unreachable\">{gone}</ul>\n" if gone else "")
            + (f"<h2>Root causes across the fleet</h2><ul id=\"causes\">{causes}</ul>\n" if causes else "")
            + "</body></html>\n")


def render_json(reports: list[Report]) -> str:
    """schema podcheck/1: the fleet grid, then every host's full report."""
    return json.dumps({"schema": SCHEMA, "fleet": grid(reports), "reports": [r.as_dict() for r in reports]},
                      indent=2) + "\n"


def changes(report: Report) -> str:
    """What `--fix` did on one pod, one line: 'changed a, b; failed c; now healthy'."""
    by: dict[str, list[str]] = {}
    for r in report.repairs:
        by.setdefault(r.status, []).append(r.id)
    parts = [f"{status} {', '.join(ids)}" for status, ids in by.items() if status != "skipped"]
    if "skipped" in by and not parts:
        parts.append(next(r.message for r in report.repairs if r.status == "skipped"))
    state = "now healthy" if report.ok else f"still failing: {', '.join(r.id for r in report.failures)}"
    return "; ".join(parts + [state]) if parts else f"nothing to repair; {state}"
