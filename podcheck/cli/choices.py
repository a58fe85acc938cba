"""The fixed choices of CLI options, as enums so `--help` lists them and click rejects the rest in one line."""
from __future__ import annotations

from enum import Enum

from podcheck.plugin import PROFILES
from podcheck.reports.render import CHECK_FORMATS

#: `check`, `report` and `serve --profile`.
Profile = Enum("Profile", {name: name for name in PROFILES}, type=str)
#: `check --format`.
CheckFormat = Enum("CheckFormat", {name: name for name in CHECK_FORMATS}, type=str)
#: `report --format`.
ReportFormat = Enum("ReportFormat", {name: name for name in ("md", "html", "json")}, type=str)


def value(choice: Enum | str) -> str:
    """The plain string of a choice (typer passes the enum member)."""
    return choice.value if isinstance(choice, Enum) else choice
