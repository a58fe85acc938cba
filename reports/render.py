"""The one table of check-result renderers: what `check --format`, `--json`, `--junit-xml`,
`--prometheus`, serve and watch print results through."""
from __future__ import annotations

from typing import Callable

from podcheck.reports import fleet, html, json_report, junit, markdown, prometheus, terminal
from podcheck.results import Report

RENDERERS: dict[str, Callable[[list[Report]], str]] = {
    "json": json_report.render, "md": markdown.render, "html": html.render,
    "junit": junit.render, "prometheus": prometheus.render,
}
CHECK_FORMATS = ("table", *RENDERERS)
#: A fleet run draws the hosts x areas view in these formats (junit and prometheus stay per check).
FLEET_RENDERERS: dict[str, Callable[[list[Report]], str]] = {
    "json": fleet.render_json, "md": fleet.render_md, "html": fleet.render_html,
}


def render_checks(fmt: str, reports: list[Report], quiet: bool = False, verbose: bool = False,
                  colour: bool = False, as_fleet: bool = False) -> str:
    """The reports in `fmt` (one of CHECK_FORMATS); the table takes quiet/verbose/colour; `as_fleet`
    draws the fleet view (reports/fleet.py) for table, md, html and json."""
    if as_fleet and fmt == "table":
        return fleet.render_table(reports, quiet=quiet)
    if as_fleet and fmt in FLEET_RENDERERS:
        return FLEET_RENDERERS[fmt](reports)
    if fmt == "table":
        return "".join(terminal.render(r, quiet=quiet, verbose=verbose, colour=colour) for r in reports)
    return RENDERERS[fmt](reports)
