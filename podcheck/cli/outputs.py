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
from podcheck.cli import fleet as fleet_cli
from podcheck.cli.choices import Profile, ReportFormat, value
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
from podcheck.host.files import umask_mode, write_atomic
from podcheck.host.pod import Pod
from podcheck.plugin import PROFILES
from podcheck.reports import bundle as bundle_mod
from podcheck.reports import fleet as fleet_view
from podcheck.reports import html, json_report, junit, markdown, prometheus, terminal
from podcheck.reports.redact import Redactor
from podcheck.reports.render import CHECK_FORMATS, render_checks
from podcheck.results import Report
from podcheck.services import diagnostics

REPORT_FORMATS = ("md", "html", "json")


def write_check_outputs(reports: list[Report], fmt: str = "table", json_out: Optional[str] = None,
                        junit_xml: Optional[Path] = None, prometheus_out: Optional[Path] = None,
                        quiet: bool = False, verbose: bool = False, fleet: bool = False, cfg: Any = None) -> None:
    """Print `fmt` and write the requested files, all from the same redacted results (`fleet`: the
    hosts x areas view for table/md/html/json, reports/fleet.py)."""
    if fmt not in CHECK_FORMATS:
        raise UsageFailure(f"--format must be one of {', '.join(CHECK_FORMATS)}, got {fmt!r}")
    clean = default_redactor(cfg=cfg)
    reports = [clean.data(r) for r in reports]
    if json_out == "-":  # `--json -` prints only JSON
        fmt, json_out = "json", None
    clean.write(None, render_checks(fmt, reports, quiet=quiet, verbose=verbose,
                                    colour=terminal.use_colour(sys.stdout), as_fleet=fleet))
    json_render = fleet_view.render_json if fleet else json_report.render
    for path, render in ((json_out, json_render), (junit_xml, junit.render), (prometheus_out, prometheus.render)):
        if path:
            with _writable(path):
                clean.write(path, render(reports), mode=umask_mode())


def report(
    config: Optional[Path] = ConfigOpt,
    hosts: str = typer.Option("local://", "--hosts", help="one testinfra host URL (ssh://pod, chroot:///rootfs)"),
    ssh_config: Optional[Path] = SshConfigOpt,
    ssh_identity_file: Optional[Path] = SshIdentityOpt,
    profile: Profile = typer.Option("runtime", "--profile", help="which checks to include"),
    fmt: ReportFormat = typer.Option("md", "--format", help="md (for a GitHub issue), html or json"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="write here (kept up to date while collecting)"),
    bundle: Optional[Path] = typer.Option(None, "--bundle", metavar="FILE.tar.gz",
                                          help="also write the report and the raw logs it quoted, redacted"),
    no_redact_uuids: bool = typer.Option(False, "--no-redact-uuids", help="keep GPU UUIDs"),
    as_fleet: bool = typer.Option(False, "--fleet", help="the fleet view of --hosts (URLs, @FILE, ssh://GLOB, ansible://GROUP)"),
    ansible_inventory: Optional[Path] = typer.Option(None, "--ansible-inventory", help="with --fleet: for ansible://GROUP"),
    parallel: Optional[int] = typer.Option(None, "--parallel", min=1, help="with --fleet: hosts checked at once (default 8)"),
) -> None:
    """A diagnostic report to attach to a bug report: pod, GPUs, versions, logs, and every check."""
    profile, fmt = value(profile), value(fmt)  # type: ignore[assignment]  # plain strings from here on
    if fmt not in REPORT_FORMATS:
        raise UsageFailure(f"--format must be one of {', '.join(REPORT_FORMATS)}, got {fmt!r}")
    if profile not in PROFILES:
        raise UsageFailure(f"--profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if as_fleet:
        given = fleet_cli.Given(profile=profile, ssh_config=as_str(ssh_config),
                                ssh_identity_file=as_str(ssh_identity_file),
                                ansible_inventory=as_str(ansible_inventory), parallel=parallel)
        reports = fleet_cli.check(load_config(config), hosts, given)
        clean = default_redactor(uuids=not no_redact_uuids, cfg=load_config(config))
        with _writable(output):
            clean.write(output, render_checks(fmt, [clean.data(r) for r in reports], as_fleet=True))
        raise typer.Exit(fleet_cli.exit_code(reports))
    if "," in hosts:
        raise UsageFailure("report takes one host; run it once per host")
    cfg = load_config(config)
    try:
        target = runner.Target.parse(hosts, ssh_config=as_str(ssh_config), ssh_identity_file=as_str(ssh_identity_file))
        if not target.is_local:
            runner.preflight(cfg, target)
        pod = Pod(cfg, target.host(), target=target.spec if target.container else None)
    except (runner.RunError, RuntimeError, ValueError) as exc:
        raise UsageFailure(f"no report: {exc}") from None
    redactor = (Redactor.for_config(cfg, uuids=not no_redact_uuids) if target.is_local
                else Redactor.from_env({}, uuids=not no_redact_uuids))

    def render(doc: Any, as_fmt: str = fmt) -> str:
        clean = redactor.data(doc)
        checks = [clean.checks] if clean.checks else []
        if as_fmt == "json":
            return json_report.render_report(clean)
        return (markdown if as_fmt == "md" else html).render(checks, clean)

    def written(doc: Any) -> None:
        if output:
            redactor.write(output, render(doc), mode=umask_mode())

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
    with _writable(output):
        write_atomic(output, text, mode=umask_mode())
    count = sum(len(files) for files in doc["sources"].values())
    typer.echo(f"podcheck: {count} file(s) of {len(sources)} source(s) in {output}", err=True)


@contextmanager
def _writable(path: Any) -> Iterator[None]:
    """A file that cannot be written is one line and exit 2, not a traceback. Missing parent folders
    are created, and one stderr line says so (the same for every output)."""
    try:
        if path is not None and str(path) != "-":
            parent = Path(os.path.abspath(path)).parent
            if not parent.exists():
                parent.mkdir(parents=True, exist_ok=True)
                typer.echo(f"podcheck: created the folder {parent} for {path}", err=True)
        yield
    except OSError as exc:
        raise UsageFailure(f"cannot write {path}: {exc.strerror or exc}") from None

