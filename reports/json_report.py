"""The JSON report (schema podcheck/1): one object per host; several hosts nest under "reports".
`podcheck report --format json` writes the diagnostic document instead (schema podcheck-report/1)."""
from __future__ import annotations

import json
from typing import Any

from podcheck.results import SCHEMA, Report


def render(reports: list[Report]) -> str:
    if len(reports) == 1:
        data = reports[0].as_dict()
    else:
        data = {"schema": SCHEMA, "reports": [r.as_dict() for r in reports]}
    return json.dumps(data, indent=2) + "\n"


def render_report(doc: Any) -> str:
    """A podcheck.services.diagnostics.Diagnostics: facts, sections and check results."""
    return json.dumps(doc.as_dict(), indent=2, default=str) + "\n"
