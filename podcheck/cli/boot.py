"""The CLI's first act, before its heavy imports: start the facts probe of a plain local run.

`podcheck` and `podcheck --fix` on the local pod always run the probe, whose `import torch` in the
pod python is the one cost podcheck cannot avoid. Started here, it overlaps podcheck's own start
(typer, pytest, testinfra, collecting the checks); `Pod.run` adopts it (podcheck.host.early). Any
other command line (a subcommand, --hosts, --select, --profile, anything unknown) starts nothing
early and runs exactly as before; so does a config that does not load (the CLI says why, later).
"""
from __future__ import annotations

import os

from podcheck import config as config_mod
from podcheck.facts import local_probe_args, probe_command
from podcheck.host.pod import start_early

#: Options of a plain local run: flags, and options that take a value. Anything else: no early probe.
FLAGS = {"--fix", "--dry-run", "--safe-only", "--background", "--no-background", "-q", "--quiet", "-v", "--verbose"}
VALUED = {"--config", "--json", "--junit-xml", "--prometheus", "--format"}


def config_path(argv: list[str]) -> str | None:
    """The --config of a plain local run's argv; "" when argv is not one (start nothing)."""
    path, i = None, 0
    while i < len(argv):
        arg = argv[i]
        name, eq, given = arg.partition("=")
        if arg in FLAGS:
            i += 1
            continue
        if name in VALUED and eq:
            path = given if name == "--config" else path
            i += 1
            continue
        if arg in VALUED and i + 1 < len(argv):
            path = argv[i + 1] if arg == "--config" else path
            i += 2
            continue
        return ""
    return path


def start_probe(argv: list[str]) -> None:
    """Start the local pod's facts probe now, when argv is a plain local run and its config loads."""
    path = config_path(argv)
    if path == "" or os.environ.get("PODCHECK_NO_EARLY_PROBE"):
        return
    try:
        cfg = config_mod.load(path)  # the CLI loads it again, and reports what is wrong with it
        argv_probe, timeout = probe_command(cfg, local_probe_args(cfg)), float(cfg.pod.probe_timeout)
    except Exception:  # noqa: BLE001 - whatever stops it here, the CLI meets again and reports in one line
        return
    start_early(argv_probe, timeout)
