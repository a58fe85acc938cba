"""The fixed choices of CLI options, as enums so `--help` lists them and click rejects the rest in one line.

They are written out for the type checker, and held to the engine's own lists here:

>>> [p.value for p in Profile] == list(PROFILES)
True
>>> [f.value for f in CheckFormat] == list(CHECK_FORMATS)
True
"""
from __future__ import annotations

from enum import Enum

from podcheck.plugin import PROFILES  # noqa: F401 - the doctest holds the enums to it
from podcheck.reports.render import CHECK_FORMATS  # noqa: F401 - and to this


class Profile(str, Enum):
    """`check`, `report` and `serve --profile`."""

    image = "image"
    boot = "boot"
    runtime = "runtime"


class CheckFormat(str, Enum):
    """`check --format`."""

    table = "table"
    json = "json"
    md = "md"
    html = "html"
    junit = "junit"
    prometheus = "prometheus"


class ReportFormat(str, Enum):
    """`report --format`."""

    md = "md"
    html = "html"
    json = "json"


def value(choice: Enum | str) -> str:
    """The plain string of a choice (typer passes the enum member)."""
    return choice.value if isinstance(choice, Enum) else choice
