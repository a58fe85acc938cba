"""`podcheck status` as text, and the fix engine's part of serve's page, from podcheck.fix.status's data."""
from __future__ import annotations

import html
import time
from datetime import datetime, timezone
from typing import Any


def render_status(data: dict[str, Any]) -> str:
    """The status document as the lines `podcheck status` prints."""
    lines = [f"state: {data['state_dir']}"]
    markers = data["markers"]
    lines.append(f"markers: {len(markers) or 'none'}")
    width = max((len(k) for k in markers), default=0)
    for rid, m in markers.items():
        when = _when(m.get("changed_at"))
        shown = [(k, str(v)) for k, v in (m.get("inputs") or {}).items() if not isinstance(v, (list, dict))]
        inputs = " ".join(f"{k}={v if len(v) <= 48 else v[:45] + '...'}" for k, v in shown[:4])
        inputs += " ..." if len(shown) > 4 else ""
        source = f"  ({m['source']}, not verified yet)" if m.get("source") != "podcheck" else \
            (f"  (migrated from {m['hint']})" if m.get("hint") else "")
        lines.append(f"  {rid:<{width}}  changed {when}, verified {_when(m.get('verified_at'))}"
                     f"{'  ' + inputs if inputs else ''}{source}")
    lock = data.get("lock")
    lines.append(f"fix lock: {'held by ' + (data.get('lock_holder') or 'another fixer') if lock else 'free'}")
    for key in ("foreground", "background"):
        run = data.get(key)
        if not run:
            continue
        steps = run.get("steps") or []
        state = run.get("state", "?")
        if state == "running" and run.get("alive") is False:
            state = "died (its process is gone; the next --fix takes over)"
        current = f", now {run['current']}" if run.get("current") else ""
        now = run.get("running") if run.get("state") == "running" else None
        done = ", ".join(f"{s['id']} {s['status']}" for s in steps if s.get("status") != "running")
        queue = f", queue {', '.join(run['queue'])}" if run.get("queue") else ""
        lines.append(f"{key} run: {state} (pid {run.get('pid')} on {run.get('host')}, started "
                     f"{_when(run.get('started'))}{current}{queue})" + (f": {done}" if done else ""))
        if now:
            last_line = f", last line: {now['last_line']}" if now.get("last_line") else ""
            lines.append(f"  running: $ {now['command']} ({elapsed(now.get('elapsed_s') or 0)}{last_line})")
        if run.get("log_tail"):
            lines.append(f"  log {run.get('log')}:")
            lines.extend(f"    {ln}" for ln in run["log_tail"])
    last = data.get("last_fix")
    if last:
        counts = ", ".join(f"{v} {k}" for k, v in (last.get("summary") or {}).items() if v and isinstance(v, int))
        repairs = ", ".join(f"{k} {v}" for k, v in last["repairs"].items())
        lines.append(f"last --fix: {_when(last.get('started'))}: {counts or 'no checks'}" + (f"; {repairs}" if repairs else ""))
    return "\n".join(lines) + "\n"


TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


def elapsed(seconds: float) -> str:
    """'45 s', '9 min 12 s'."""
    seconds = int(seconds)
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _when(stamp: Any) -> str:
    """Every time `status` prints, in one format (local time): a unix stamp or an ISO 8601 string."""
    if isinstance(stamp, str):
        try:
            stamp = datetime.fromisoformat(stamp).timestamp()
        except ValueError:
            return stamp
    return time.strftime(TIME_FORMAT, time.localtime(stamp)) if isinstance(stamp, (int, float)) else "never"


# --- serve's page ------------------------------------------------------------------------------------

def run_html(name: str, run: Any) -> str:
    """A `podcheck --fix` run (foreground or background) that is still going: its steps and log tail."""
    if not isinstance(run, dict) or run.get("state") != "running" or run.get("alive") is False:
        return ""
    e = html.escape
    steps = "".join(f"<li>{e(str(s.get('id')))}: {e(str(s.get('status')))} {e(str(s.get('message') or ''))}</li>"
                    for s in run.get("steps") or [])
    now = run.get("running") or {}
    if now.get("command"):  # the command a repair runs now, as `podcheck status` shows it
        steps += (f"<li class=\"running\">running: <code>$ {e(str(now['command']))}</code> "
                  f"({e(elapsed(now.get('elapsed_s') or 0))}){': ' + e(str(now['last_line'])) if now.get('last_line') else ''}</li>")
    return (f"<h3>{e(name)} repairs <small>pid {e(str(run.get('pid')))}; now: {e(str(run.get('current') or '-'))}; "
            f"queued: {e(', '.join(map(str, run.get('queue') or [])) or '-')}</small></h3>"
            f"<ul>{steps}</ul><pre>{e(chr(10).join(map(str, run.get('log_tail') or [])))}</pre>")


def markers_html(markers: dict[str, Any]) -> str:
    """The installed markers, one line: 'ffmpeg (changed 2026-12-01T22:40:00+00:00), ...' or 'none'."""
    return ", ".join(f"{html.escape(rid)} (changed {html.escape(_iso(m.get('changed_at')))})"
                     for rid, m in markers.items()) or "none"


def _iso(value: Any) -> str:
    if isinstance(value, (int, float)):
        return datetime.fromtimestamp(value, timezone.utc).isoformat(timespec="seconds")
    return str(value or "?")
