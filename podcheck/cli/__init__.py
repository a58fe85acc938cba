"""The command line: the typer app and its commands, thin over the engine.

`main` starts a plain local run's facts probe (podcheck.cli.boot) before it imports the app, so the
pod's `import torch` overlaps podcheck's own start."""
from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Console entry point (podcheck.cli.app.main, after the early probe)."""
    from podcheck.cli import boot  # light: the standard library, the config and the probe's argv

    boot.start_probe(list(sys.argv[1:] if argv is None else argv))
    from podcheck.cli import app  # heavy (typer, pytest, testinfra): imported once the probe runs
    from podcheck.host import early  # light; imported with the app, after the probe started

    try:
        return app.main(argv)
    finally:
        early.stop_unadopted()  # one invocation's early probe never serves a later one


__all__ = ["main"]
