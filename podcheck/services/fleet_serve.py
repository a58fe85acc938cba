"""`podcheck serve --hosts <fleet>`: the fleet view as a read-only status page.

    GET /healthz      200 when every pod was reached and passed, 503 otherwise (one line)
    GET /api/status   the fleet JSON (schema podcheck/1: `fleet` grid and every pod's report)
    GET /             the hosts x areas page (reports/fleet.py), refreshing itself

Fleet runs are cached for `[serve] cache_seconds` (at least 30 s: a fleet run is not free);
requests during a run wait for it. Everything passes the redactor; nothing is ever repaired here.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from podcheck.config import Config
from podcheck.reports import fleet as view
from podcheck.results import Report
from podcheck.services.serve import Cache, ReadOnlyHandler, address, answer_until_stopped, bind, url
from podcheck.services.watch import redactor_for

MIN_TTL = 30.0


@dataclass
class FleetSnapshot:
    reports: list[Report] = field(default_factory=list)
    error: str | None = None
    taken: float = 0.0


class FleetService:
    def __init__(self, cfg: Config, produce: Callable[[], list[Report]], ttl: float | None = None):
        self.produce = produce
        produce_snapshot: Any = self._run  # Cache is typed for serve's Snapshot; it holds any snapshot
        self.cache: Any = Cache(produce_snapshot, max(MIN_TTL, cfg.serve.cache_seconds) if ttl is None else ttl)
        self.redactor = redactor_for(cfg)

    def _run(self) -> FleetSnapshot:
        try:
            return FleetSnapshot([self.redactor.data(r) for r in self.produce()], None, time.time())
        except Exception as exc:  # a usage error or a bug: the page says so instead of hanging
            return FleetSnapshot([], f"no verdict: {exc}", time.time())

    def healthz(self) -> tuple[int, str]:
        snap = self.cache.get()
        if snap.error:
            return 503, self.redactor.text(f"error: {snap.error}\n")
        s = view.grid(snap.reports)["summary"]
        line = f"{s['passed']}/{s['pods']} pods passed, {s['failed']} failed, {s['unreachable']} unreachable\n"
        return (200 if s["passed"] == s["pods"] else 503), line

    def page(self) -> str:
        snap = self.cache.get()
        if snap.error:
            return view.render_html([], refresh=int(self.cache.ttl)).replace(
                "<h1>podcheck fleet</h1>", f"<h1>podcheck fleet</h1><p class=\"bad\">{_escape(snap.error)}</p>")
        return view.render_html(snap.reports, refresh=int(self.cache.ttl))

    def status(self) -> str:
        snap = self.cache.get()
        if snap.error:
            return json.dumps({"schema": "podcheck/1", "error": snap.error}, indent=2) + "\n"
        return view.render_json(snap.reports)


def _escape(text: str) -> str:
    from html import escape
    return escape(text)


def handler_for(service: FleetService):
    class Handler(ReadOnlyHandler):  # no HEAD here (501), and no Allow header on the 405
        def answer_healthz(self) -> tuple[int, str]:
            return service.healthz()

        def answer_status(self) -> str:
            return service.status()

        def answer_page(self) -> str:
            return service.page()

    return Handler


def main(cfg: Config, produce: Callable[[], list[Report]], port: int | None = None, listen: str | None = None,
         echo: Callable[[str], None] = print) -> int:
    port, listen = address(cfg, port, listen)
    service = FleetService(cfg, produce)
    server = bind(listen, port, handler_for(service))
    threading.Thread(target=service.cache.get, name="podcheck-fleet-warmup", daemon=True).start()
    echo(f"podcheck serve: {url(listen, server)} (fleet status page, read-only; "
         f"runs cached {service.cache.ttl:g} s; /healthz, /api/status)")
    return answer_until_stopped(server)
