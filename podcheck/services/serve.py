"""`podcheck serve`: a read-only health endpoint and status page for the pod.

    GET /healthz      200 when the last check run passed, 503 otherwise (one line of text)
    GET /api/status   the JSON report, plus the watch's recent actions and podcheck's state
    GET /             a small self-contained page that refreshes itself

Check runs are cached for `[serve] cache_seconds` (default 5 s); requests that arrive while a run
is under way wait for that run instead of starting another. Nothing here changes the pod: no
repair is ever triggered over HTTP, and every answer passes through the redaction layer.
"""
from __future__ import annotations

import errno
import html
import json
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import groupby
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlsplit

from podcheck import runner
from podcheck.config import Config
from podcheck.facts import ProbeCache
from podcheck.fix.status import status as fix_status_data
from podcheck.host.pod import Pod
from podcheck.reports import status as fix_status
from podcheck.results import Report
from podcheck.services import daemon
from podcheck.services.daemon import CannotStart, iso
from podcheck.services.watch import read_log, redactor_for

ORDER = ("failed", "error", "passed", "skipped")
HOSTNAME = re.compile(r"^[A-Za-z0-9.-]+$|^\[[0-9A-Fa-f:.]+\]$")


@dataclass
class Snapshot:
    """One check run as served: its report, or why there is none."""

    report: Report | None
    error: str | None
    taken: float  # time.time() when the run ended

    @property
    def healthy(self) -> bool:
        return self.report is not None and self.report.ok


class Cache:
    """The last snapshot, reused for `ttl` seconds. Concurrent callers during a miss share one run."""

    def __init__(self, produce: Callable[[], Snapshot], ttl: float, clock: Callable[[], float] = time.monotonic):
        self.produce, self.ttl, self.clock = produce, ttl, clock
        self.runs = 0
        self._cond = threading.Condition()
        self._value: Snapshot | None = None
        self._at = float("-inf")
        self._busy = False

    def get(self) -> Snapshot:
        with self._cond:
            if self._value is not None and self.clock() - self._at < self.ttl:
                return self._value
            if self._busy:  # a run is under way: its result is ours too
                runs = self.runs
                self._cond.wait_for(lambda: self.runs != runs)
                return self._value
            self._busy = True
        value = self.produce()
        with self._cond:
            self._value, self._at = value, self.clock()
            self._busy = False
            self.runs += 1
            self._cond.notify_all()
        return value


class Service:
    """What the endpoints answer: cached check runs, the watch log, and redaction of everything."""

    def __init__(self, cfg: Config, select: list[str], profile: str = "runtime", ttl: float | None = None):
        self.cfg, self.select, self.profile = cfg, select, profile

        self.cache = Cache(self._run, cfg.serve.cache_seconds if ttl is None else ttl)
        self.probe_cache = ProbeCache(cfg.pod.probe_reuse_seconds)
        self.redactor = redactor_for(cfg)

    def _run(self) -> Snapshot:

        try:
            report = runner.run(self.cfg, runner.Target(), profile=self.profile, select=self.select,
                                probe_cache=self.probe_cache)
        except runner.RunError as exc:
            return Snapshot(None, f"no verdict: {exc}", time.time())
        except Exception as exc:  # a bug must not leave the waiting requests without an answer
            return Snapshot(None, f"check run failed: {type(exc).__name__}: {exc}", time.time())
        return Snapshot(report, None, time.time())

    def healthz(self) -> tuple[int, str]:
        snap = self.cache.get()
        if snap.error:
            return 503, f"error: {snap.error}\n"
        failing = [r.id for r in snap.report.failures]
        counts = _counts(snap.report.summary)
        if failing:
            return 503, f"failing: {', '.join(failing)} ({counts})\n"
        return 200, f"ok: {counts}\n"

    def status(self) -> dict[str, Any]:
        snap = self.cache.get()
        data = {
            "schema": "podcheck-serve/1",
            "healthy": snap.healthy,
            "checked": iso(snap.taken),
            "age_s": round(time.time() - snap.taken, 3),
            "cache_seconds": self.cache.ttl,
            "runs": self.cache.runs,
            "error": snap.error,
            "report": snap.report.as_dict() if snap.report else None,
            "watch": watch_state(self.cfg),
        }
        try:
            data["fix"] = fix_state(self.cfg)
        except Exception as exc:  # the page still answers when the state cannot be read
            data["fix"] = {"error": f"cannot read podcheck's state: {type(exc).__name__}: {exc}"}
        return self.redactor.data(data)


def watch_state(cfg: Config) -> dict[str, Any]:
    """Is a watch running on this pod, and what did watches do lately (from watch.log)."""
    entries = read_log(Path(cfg.watch.log), last=50)
    holder = daemon.holder(daemon.pidfile_path(cfg.pod.state_dir, "watch"))
    running = [e for e in entries if e.get("event") == "repair" and e.get("outcome") == "running"]
    return {"running": holder, "recent": entries[-20:], "repairs_running": running[-5:]}


def fix_state(cfg: Config) -> dict[str, Any]:
    """What `podcheck status` shows: install markers, the fix lock, the foreground and background
    repair runs with their progress and log tails."""
    import testinfra


    return fix_status_data(Pod(cfg, testinfra.get_host("local://")))


# --- the page --------------------------------------------------------------------------------------

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .2em} h2{font-size:1.05em;margin:1.4em 0 .4em}
.sum{padding:.6em 1em;border-radius:6px;color:#fff;display:inline-block}
.ok{background:#2e7d32}.bad{background:#c62828}
table{border-collapse:collapse;width:100%;background:#fff}td,th{padding:.3em .6em;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
.passed{color:#2e7d32}.failed{color:#c62828;font-weight:600}.error{color:#8e24aa;font-weight:600}.skipped{color:#999}
.area td{background:#f0f0f0;font-weight:600}
pre{background:#263238;color:#eee;padding:.6em;overflow:auto;max-height:14em;font-size:12px}
small,.muted{color:#777}a{color:#1565c0}
"""


def page(status: dict[str, Any], comfyui: str, refresh: int) -> str:
    """The status page: self-contained (no script, no external asset), refreshing itself."""
    e = html.escape
    report = status.get("report") or {}
    results = report.get("results") or []
    ok = status.get("healthy")
    summary = report.get("summary") or {}
    counts = _counts(summary) or e(status.get("error") or "no verdict")
    rows = []
    for area, items in groupby(sorted(results, key=lambda r: r["area"]), key=lambda r: r["area"]):
        rows.append(f'<tr class="area"><td colspan="3">{e(area)}</td></tr>')
        for r in items:
            message = r.get("message") or (f"blocked by {r['blocked_by']}" if r.get("blocked_by") else "")
            repair = f' <small>repair: {e(r["repair"])}</small>' if r.get("repair") and r["status"] in ("failed", "error") else ""
            rows.append(f'<tr><td class="{e(r["status"])}">{e(r["status"].upper())}</td><td>{e(r["id"])}</td>'
                        f'<td>{e(message)}{repair}</td></tr>')
    watch = status.get("watch") or {}
    holder = watch.get("running")
    watch_line = (f"watch runs (pid {e(str(holder['pid']))} since {e(str(holder['started']))})" if holder
                  else "no watch runs on this pod (<code>podcheck watch</code>)")
    recent = "\n".join(_log_line(x) for x in (watch.get("recent") or [])[-12:]) or "nothing yet"
    fix = status.get("fix") or {}
    in_progress = "".join(fix_status.run_html(name, fix.get(name)) for name in ("foreground", "background"))
    in_progress += "".join(f"<p>watch: {e(str(x.get('repair')))} {e(str(x.get('message', '')))}</p>"
                           for x in watch.get("repairs_running") or [])
    installed = fix_status.markers_html(fix.get("markers") or {})
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="{refresh}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>podcheck: {'healthy' if ok else 'failing'} - {e(str(report.get('host', '')))}</title><style>{STYLE}</style></head>
<body>
<h1>podcheck <small>{e(str(report.get('host', '')))}, profile {e(str(report.get('profile', '')))}</small></h1>
<p><span id="summary" class="sum {'ok' if ok else 'bad'}">{'Healthy' if ok else 'Failing'}: {counts}</span>
<small class="muted"> checked {e(str(status.get('checked')))}, refreshes every {refresh} s</small></p>
<p><a href="{e(comfyui)}">ComfyUI</a> · <a href="/api/status">/api/status</a> · <a href="/healthz">/healthz</a></p>
<h2>Checks</h2>
<table id="checks"><tr><th>status</th><th>check</th><th>message</th></tr>{''.join(rows)}</table>
<h2>Repairs in progress</h2>{in_progress or '<p class="muted">none</p>'}
<h2>Watch</h2><p>{watch_line}</p><pre>{e(recent)}</pre>
<h2>Installed</h2><p id="markers">{installed}</p>
</body></html>
"""


def _counts(summary: dict[str, int]) -> str:
    return ", ".join(f"{summary[s]} {s}" for s in ORDER if summary.get(s))


def _log_line(entry: dict[str, Any]) -> str:
    what = entry.get("check") or ""
    what = ", ".join(what) if isinstance(what, list) else what
    parts = [entry.get("time"), entry.get("event"), what, entry.get("repair"),
             entry.get("result") or entry.get("outcome"), entry.get("message")]
    return " ".join(str(p) for p in parts if p)


def comfyui_link(host_header: str | None, cfg: Config, port: int) -> str:
    """ComfyUI as the browser reaches this page: a RunPod proxy name (<id>-8765.proxy.runpod.net) gets
    ComfyUI's port swapped in; otherwise the same host name on ComfyUI's port."""
    comfy = cfg.comfyui.port
    name = (host_header or "").strip()
    proxy = re.match(rf"^([A-Za-z0-9-]+)-{port}(\.proxy\.runpod\.net)$", name)
    if proxy:
        return f"https://{proxy.group(1)}-{comfy}{proxy.group(2)}/"
    hostname = urlsplit(f"//{name}").hostname if name else None
    if not hostname or not HOSTNAME.match(hostname if ":" not in hostname else f"[{hostname}]"):
        hostname = "127.0.0.1"
    return f"http://{f'[{hostname}]' if ':' in hostname else hostname}:{comfy}/"


# --- HTTP --------------------------------------------------------------------------------------------

TEXT = "text/plain; charset=utf-8"


class ReadOnlyHandler(BaseHTTPRequestHandler):
    """The routes both `podcheck serve` and `serve --hosts` answer (/healthz, /api/status, /), GET only.

    A subclass says what each route answers; every other method is refused with 405 (and `allow`, if
    set, as its Allow header). A subclass that takes HEAD sets `head_only` before calling do_GET."""

    allow: str | None = None
    head_only = False

    def answer_healthz(self) -> tuple[int, str]:
        raise NotImplementedError

    def answer_status(self) -> str:
        raise NotImplementedError

    def answer_page(self) -> str:
        raise NotImplementedError

    def version_string(self) -> str:
        return "podcheck"

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        try:
            if path == "/healthz":
                code, text = self.answer_healthz()
                self.send_text(code, TEXT, text)
            elif path == "/api/status":
                self.send_text(200, "application/json", self.answer_status())
            elif path in ("/", "/index.html"):
                self.send_text(200, "text/html; charset=utf-8", self.answer_page())
            else:
                self.send_text(404, TEXT, "not found: /healthz, /api/status, /\n")
        except (BrokenPipeError, ConnectionResetError):
            pass

    def refuse(self) -> None:
        self.send_text(405, TEXT, "podcheck serve is read-only\n", allow=self.allow)

    do_POST = do_PUT = do_DELETE = do_PATCH = refuse

    def send_text(self, code: int, kind: str, text: str, allow: str | None = None) -> None:
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if allow:
            self.send_header("Allow", allow)
        self.end_headers()
        if not self.head_only:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # quiet: a supervisor's log is not an access log
        pass


def handler_for(service: Service, port: int):
    class Handler(ReadOnlyHandler):
        allow = "GET, HEAD"

        def answer_healthz(self) -> tuple[int, str]:
            code, text = service.healthz()
            return code, service.redactor.text(text)

        def answer_status(self) -> str:
            return json.dumps(service.status(), indent=2) + "\n"

        def answer_page(self) -> str:
            refresh = max(2, int(round(service.cache.ttl)))
            return page(service.status(), comfyui_link(self.headers.get("Host"), service.cfg, port), refresh)

        def do_HEAD(self) -> None:
            self.head_only = True
            self.do_GET()

    return Handler


def bind(listen: str, port: int, handler) -> ThreadingHTTPServer:
    """The server, or CannotStart with one line (port taken, bad address)."""
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET

    class Server(ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

    try:
        return Server((listen, port), handler)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise CannotStart(f"port {port} on {listen} is taken: another program listens there; "
                              "pick another with --port") from None
        if exc.errno == errno.EACCES:
            raise CannotStart(f"port {port} on {listen} needs more privileges; pick one above 1023 with --port") from None
        raise CannotStart(f"cannot listen on {listen}:{port}: {exc.strerror or exc}") from None


def address(cfg: Config, port: int | None, listen: str | None) -> tuple[int, str]:
    """Where to listen: the options, else `[serve]`; CannotStart for a port out of range."""
    port = cfg.serve.port if port is None else port
    if not 0 <= port < 65536:
        raise CannotStart(f"--port must be 0..65535 (0: any free port), got {port}")
    return port, listen or cfg.serve.listen


def url(listen: str, server: ThreadingHTTPServer) -> str:
    """The server's base URL as the startup line shows it (an IPv6 address in brackets)."""
    shown = f"[{listen}]" if ":" in listen else listen
    return f"http://{shown}:{server.server_address[1]}/"


def answer_until_stopped(server: ThreadingHTTPServer) -> int:
    """Serve until SIGTERM/SIGINT, then close the server; 0."""
    def stop(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    try:
        with daemon.on_signals(stop, (signal.SIGTERM,)):
            server.serve_forever(poll_interval=0.5)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def main(cfg: Config, port: int | None = None, listen: str | None = None, select: list[str] | None = None,
         profile: str = "runtime", echo: Callable[[str], None] = print) -> int:
    """`podcheck serve`: answer until SIGTERM/SIGINT."""
    port, listen = address(cfg, port, listen)
    service = Service(cfg, list(select or []), profile)
    server = bind(listen, port, handler_for(service, port))
    echo(f"podcheck serve: {url(listen, server)} (read-only; checks cached "
         f"{service.cache.ttl:g} s; /healthz, /api/status)")
    # after the line: the warm-up's pytest captures the process's stdout while it runs
    threading.Thread(target=service.cache.get, name="podcheck-serve-warmup", daemon=True).start()
    return answer_until_stopped(server)
