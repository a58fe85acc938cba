"""Prometheus textfile (node_exporter's textfile collector): one gauge family per fact of the last run.

`podcheck_check_ok{host,id,area}` is 1 when a check passed and 0 when it failed or erred; a
skipped check has no sample (it says nothing about health). prometheus-client writes the text, so
label values are escaped the way Prometheus reads them.
"""
from __future__ import annotations

from podcheck.results import STATUSES, Report


def render(reports: list[Report]) -> str:
    from prometheus_client import (  # heavy: only when rendering
        CollectorRegistry,
        Gauge,
        generate_latest,
    )

    registry = CollectorRegistry()
    ok = Gauge("podcheck_check_ok", "1 when the check passed, 0 when it failed or erred (skipped: no sample)",
               ["host", "id", "area"], registry=registry)
    duration = Gauge("podcheck_check_duration_seconds", "How long the check took", ["host", "id"], registry=registry)
    counts = Gauge("podcheck_checks", "Checks of the last run by status", ["host", "status"], registry=registry)
    last_run = Gauge("podcheck_last_run_timestamp_seconds", "When the last run finished (unix time)", ["host"],
                     registry=registry)
    repairs = Gauge("podcheck_repairs_total", "Repairs of the last run by outcome", ["host", "id", "status"],
                    registry=registry)
    for report in reports:
        for r in report.results:
            if r.status != "skipped":
                ok.labels(report.host, r.id, r.area).set(1 if r.status == "passed" else 0)
            duration.labels(report.host, r.id).set(round(r.duration_s, 4))
        for status in STATUSES:
            counts.labels(report.host, status).set(report.summary[status])
        last_run.labels(report.host).set(round(report.started + report.duration_s, 3))
        for rep in report.repairs:
            repairs.labels(report.host, rep.id, rep.status).inc()
    return generate_latest(registry).decode()
