"""The one table of check-result renderers: what `check --format`, `--json`, `--junit-xml`,
`--prometheus`, serve and watch print results through."""
from __future__ import annotations

from typing import Callable

from podcheck.reports import html, json_report, junit, markdown, prometheus, terminal

from podcheck.results import Report

RENDERERS: dict[str, Callable[[list[Report]], str]] = {
    "json": json_report.render, "md": markdown.render, "html": html.render,
    "junit": junit.render, "prometheus": prometheus.render,
}
CHECK_FORMATS = ("table", *RENDERERS)


def render_checks(fmt: str, reports: list[Report], quiet: bool = False, verbose: bool = False,
                  colour: bool = False) -> str:
    """The reports in `fmt` (one of CHECK_FORMATS); the table takes quiet/verbose/colour."""
    if fmt == "table":
        return "".join(terminal.render(r, quiet=quiet, verbose=verbose, colour=colour) for r in reports)
    return RENDERERS[fmt](reports)
