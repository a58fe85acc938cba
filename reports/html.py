"""One self-contained HTML page: inline CSS only (a Content-Security-Policy forbids loading anything
else, no scripts), status colours, the summary on top, every section in a <details> that folds."""
from __future__ import annotations

import time
from html import escape
from typing import Any

from podcheck.reports.terminal import LABELS, summary, to_fix

from podcheck import __version__
from podcheck.results import Report

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
STYLE = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1f2328}
h1{font-size:1.5rem;margin:0 0 .25rem}.meta{color:#59636e;margin:0 0 1rem}
.summary{border:2px solid;border-radius:8px;padding:.75rem 1rem;margin:1rem 0}
.summary.ok{border-color:#1a7f37;background:#dafbe1}.summary.bad{border-color:#cf222e;background:#ffebe9}
.incomplete{border:2px dashed #9a6700;background:#fff8c5;padding:.5rem 1rem;border-radius:8px}
table{border-collapse:collapse;width:100%;margin:.5rem 0}td,th{border:1px solid #d1d9e0;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}table.facts th{width:16rem}
.status{font-weight:700;white-space:nowrap;width:4rem}td.id{white-space:nowrap;width:1%}
.summary ul{margin:.25rem 0 0;padding-left:1.25rem}
.passed{color:#1a7f37}.failed{color:#cf222e}.error{color:#8250df}.skipped{color:#9a6700}
tr.row-failed,tr.row-error{background:#fff5f5}
details{border:1px solid #d1d9e0;border-radius:8px;margin:.75rem 0;padding:.25rem .75rem}
details>summary{cursor:pointer;font-weight:600;padding:.25rem 0}details details{margin-left:.5rem}
pre{background:#f6f8fa;padding:.5rem;overflow-x:auto;white-space:pre-wrap;word-break:break-all;font-size:13px}
.missing{color:#9a6700}code{font-size:13px}
"""


def render(reports: list[Report], doc: Any = None) -> str:
    """`reports` (check results per host); `doc` is a podcheck.services.diagnostics.Diagnostics, or None."""
    host = doc.host if doc is not None else ", ".join(r.host for r in reports)
    ok = bool(reports) and all(r.ok for r in reports)
    parts = [f"<h1>podcheck report: {escape(host)}</h1>"]
    if doc is not None:
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(doc.started))
        parts.append(f'<p class="meta">podcheck {escape(__version__)} · started {started} · {doc.duration_s:.1f} s</p>')
        if not doc.complete:
            parts.append(f'<p class="incomplete"><strong>Incomplete:</strong> still collecting '
                         f"{escape(str(doc.collecting))} when this was written.</p>")
    lines = "".join(f"<p><strong>{escape(r.host)}</strong> ({escape(r.profile)}): {escape(summary(r))}</p>"
                    + _failures(r) for r in reports) or "<p>no check results</p>"
    parts.append(f'<section id="summary" class="summary {"ok" if ok else "bad"}">{lines}</section>')
    for report in reports:
        title = "Checks" + (f" on {report.host}" if len(reports) > 1 else "")
        rows = "".join(
            f'<tr class="row-{r.status}"><td class="status {r.status}">{LABELS[r.status]}</td>'
            f'<td class="id"><code>{escape(r.id)}</code></td><td>{escape(r.message)}</td></tr>' for r in report.results)
        parts.append(_details(title, f'<table class="checks"><tr><th>status</th><th>check</th><th>message</th></tr>'
                                     f"{rows}</table>", opened=True, key="checks"))
    for section in doc.ordered() if doc is not None else []:
        if section.key == "checks" and not section.missing:
            continue
        body = []
        if section.rows:
            body.append('<table class="facts">' + "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(_show(v))}</td></tr>"
                                             for k, v in section.rows.items()) + "</table>")
        body += [f'<p class="missing">⚠ {escape(line)}</p>' for line in section.missing]
        body += [_details(name, f"<pre>{escape(text)}</pre>") for name, text in section.texts.items()]
        parts.append(_details(section.title, "".join(body), opened=bool(section.missing), key=section.key))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>podcheck report: {escape(host)}</title><style>{STYLE}</style></head>\n<body>\n"
        + "\n".join(parts) + "\n</body></html>\n"
    )


def _failures(report: Report) -> str:
    items = "".join(f'<li><code class="{r.status}">{escape(r.id)}</code>: {escape(r.message)}</li>'
                    for r in report.failures)
    fixes = "".join(f"<li><code>{escape(what)}</code>: {escape(how)}</li>" for what, how in to_fix(report))
    return (f"<ul>{items}</ul>" if items else "") + (f"<p>to fix:</p><ul>{fixes}</ul>" if fixes else "")


def _details(title: str, body: str, opened: bool = False, key: str = "") -> str:
    ident = f' id="{escape(key)}"' if key else ""
    return f"<details{ident}{' open' if opened else ''}><summary>{escape(title)}</summary>{body}</details>"


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    return "–" if value is None else str(value)
