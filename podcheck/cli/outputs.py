"""The output side of the CLI: what `check` writes (table, JSON, JUnit, Prometheus, Markdown, HTML),
`podcheck report` and `podcheck manifest`. Everything printed or written passes the Redactor."""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, List, Optional

import typer

from podcheck import runner
from podcheck.cli.common import (
    ConfigOpt,
    SshConfigOpt,
    SshIdentityOpt,
    UsageFailure,
    as_str,
    default_redactor,
    load_config,
)
from podcheck.domain import manifest as manifest_mod
from podcheck.host.files import write_atomic
from podcheck.host.pod import Pod
from podcheck.plugin import PROFILES
from podcheck.reports import bundle as bundle_mod
from podcheck.reports import html, json_report, junit, markdown, prometheus, terminal
from podcheck.reports.redact import Redactor
from podcheck.reports.render import CHECK_FORMATS, render_checks
from podcheck.results import Report
from podcheck.services import diagnostics

REPORT_FORMATS = ("md", "html", "json")


def write_check_outputs(reports: list[Report], fmt: str = "table", json_out: Optional[str] = None,
                        junit_xml: Optional[Path] = None, prometheus_out: Optional[Path] = None,
                        quiet: bool = False, verbose: bool = False) -> None:
    """Print `fmt` and write the requested files, all from the same redacted results."""
    if fmt not in CHECK_FORMATS:
        raise UsageFailure(f"--format must be one of {', '.join(CHECK_FORMATS)}, got {fmt!r}")
    clean = default_redactor()
    reports = [clean.data(r) for r in reports]
    if json_out == "-":  # `--json -` prints only JSON
        fmt, json_out = "json", None
    clean.write(None, render_checks(fmt, reports, quiet=quiet, verbose=verbose,
                                    colour=terminal.use_colour(sys.stdout)))
    for path, render in ((json_out, json_report.render), (junit_xml, junit.render), (prometheus_out, prometheus.render)):
        if path:
            with _writable(path):
                clean.write(path, render(reports))


def report(
    config: Optional[Path] = ConfigOpt,
    hosts: str = typer.Option("local://", "--hosts", help="one testinfra host URL (ssh://pod, chroot:///rootfs)"),
    ssh_config: Optional[Path] = SshConfigOpt,
    ssh_identity_file: Optional[Path] = SshIdentityOpt,
    profile: str = typer.Option("runtime", "--profile", help="which checks to include: image | boot | runtime"),
    fmt: str = typer.Option("md", "--format", help="md (for a GitHub issue) | html | json"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="write here (kept up to date while collecting)"),
    bundle: Optional[Path] = typer.Option(None, "--bundle", metavar="FILE.tar.gz",
                                          help="also write the report and the raw logs it quoted, redacted"),
    no_redact_uuids: bool = typer.Option(False, "--no-redact-uuids", help="keep GPU UUIDs"),
) -> None:
    """A diagnostic report to attach to a bug report: pod, GPUs, versions, logs, and every check."""
    if fmt not in REPORT_FORMATS:
        raise UsageFailure(f"--format must be one of {', '.join(REPORT_FORMATS)}, got {fmt!r}")
    if profile not in PROFILES:
        raise UsageFailure(f"--profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if "," in hosts:
        raise UsageFailure("report takes one host; run it once per host")
    cfg = load_config(config)
    target = runner.Target.parse(hosts, ssh_config=as_str(ssh_config), ssh_identity_file=as_str(ssh_identity_file))
    try:
        if not target.is_local:
            runner.preflight(cfg, target)
        pod = Pod(cfg, target.host())
    except (runner.RunError, RuntimeError, ValueError) as exc:
        raise UsageFailure(f"no report: {exc}") from None
    redactor = Redactor.from_env(os.environ if target.is_local else {}, uuids=not no_redact_uuids)

    def render(doc: Any, as_fmt: str = fmt) -> str:
        clean = redactor.data(doc)
        checks = [clean.checks] if clean.checks else []
        if as_fmt == "json":
            return json_report.render_report(clean)
        return (markdown if as_fmt == "md" else html).render(checks, clean)

    def written(doc: Any) -> None:
        if output:
            redactor.write(output, render(doc))

    with _writable(output):
        doc = diagnostics.collect(pod, redactor, lambda: runner.run(cfg, target, profile=profile), on_update=written)
    if not output:
        redactor.write(None, render(doc))
    if bundle:
        members = {f"report.{fmt}": render(doc)}
        members.setdefault("report.json", render(doc, "json"))
        members.update({f"logs/{name}": text for name, text in doc.logs.items()})
        with _writable(bundle):
            bundle_mod.write(bundle, members, redactor)


def manifest(
    sources: List[str] = typer.Argument(..., metavar="SRC...", help="folders or files the image is built from"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="write the manifest here (default: stdout)"),
) -> None:
    """A build manifest (relative path -> sha256 per source) for image.source_fresh."""
    try:
        doc = manifest_mod.build(sources)
    except manifest_mod.ManifestError as exc:
        raise UsageFailure(str(exc)) from None
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    write_atomic(output, text)
    count = sum(len(files) for files in doc["sources"].values())
    typer.echo(f"podcheck: {count} file(s) of {len(sources)} source(s) in {output}", err=True)


@contextmanager
def _writable(path: Any) -> Iterator[None]:
    """A file that cannot be written is one line and exit 2, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise UsageFailure(f"cannot write {path}: {exc.strerror or exc}") from None

