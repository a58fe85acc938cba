"""The JSON report (schema podcheck/1): one object per host; several hosts nest under "reports"."""
from __future__ import annotations

import json

from podcheck.results import SCHEMA, Report


def render(reports: list[Report]) -> str:
    if len(reports) == 1:
        data = reports[0].as_dict()
    else:
        data = {"schema": SCHEMA, "reports": [r.as_dict() for r in reports]}
    return json.dumps(data, indent=2) + "\n"
