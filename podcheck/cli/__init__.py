"""The command line: the typer app and its commands, thin over the engine."""
from podcheck.cli.app import app, main

__all__ = ["app", "main"]
