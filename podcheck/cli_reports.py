"""The output side of the CLI: what `check` writes (table, JSON, JUnit, Prometheus, Markdown, HTML),
`podcheck report` and `podcheck manifest`. Everything printed or written passes the Redactor."""
from __future__ import annotations

import json
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from podcheck.results import Report

CHECK_FORMATS = ("table", "json", "md", "html", "junit", "prometheus")
REPORT_FORMATS = ("md", "html", "json")


def _usage(message: str) -> Exception:
    from podcheck.cli import UsageFailure
    return UsageFailure(message)


def default_redactor(uuids: bool = True, cfg: Any = None):
    """The Redactor for what this process prints: it knows the secret variables of its environment and,
    given the config, the secret values of the rclone config (Redactor.for_config, as watch and serve)."""
    from podcheck.reports.redact import Redactor
    return Redactor.for_config(cfg, uuids=uuids)


def render_checks(fmt: str, reports: list[Report], quiet: bool = False, verbose: bool = False) -> str:
    from podcheck.reports import html, json_report, junit, markdown, prometheus, terminal

    if fmt == "table":
        colour = terminal.use_colour(sys.stdout)
        return "".join(terminal.render(r, quiet=quiet, verbose=verbose, colour=colour) for r in reports)
    renderers: dict[str, Callable[[list[Report]], str]] = {
        "json": json_report.render, "md": markdown.render, "html": html.render,
        "junit": junit.render, "prometheus": prometheus.render}
    return renderers[fmt](reports)


def write_check_outputs(reports: list[Report], fmt: str = "table", json_out: Optional[str] = None,
                        junit_xml: Optional[Path] = None, prometheus_out: Optional[Path] = None,
                        quiet: bool = False, verbose: bool = False, cfg: Any = None) -> None:
    """Print `fmt` and write the requested files, all from the same redacted results."""
    from podcheck.reports import json_report, junit, prometheus

    if fmt not in CHECK_FORMATS:
        raise _usage(f"--format must be one of {', '.join(CHECK_FORMATS)}, got {fmt!r}")
    clean = default_redactor(cfg=cfg)
    reports = [clean.data(r) for r in reports]
    if json_out == "-":  # `--json -` prints only JSON
        fmt, json_out = "json", None
    clean.write(None, render_checks(fmt, reports, quiet=quiet, verbose=verbose))
    for path, render in ((json_out, json_report.render), (junit_xml, junit.render), (prometheus_out, prometheus.render)):
        if path:
            with _writable(path):
                clean.write(path, render(reports))


def report(
    config: Optional[Path] = typer.Option(None, "--config", help="podcheck.toml"),
    hosts: str = typer.Option("local://", "--hosts", help="one testinfra host URL (ssh://pod, chroot:///rootfs)"),
    ssh_config: Optional[Path] = typer.Option(None, "--ssh-config", help="ssh_config for ssh:// hosts"),
    ssh_identity_file: Optional[Path] = typer.Option(None, "--ssh-identity-file", help="ssh key for ssh:// hosts"),
    profile: str = typer.Option("runtime", "--profile", help="which checks to include: image | boot | runtime"),
    fmt: str = typer.Option("md", "--format", help="md (for a GitHub issue) | html | json"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="write here (kept up to date while collecting)"),
    bundle: Optional[Path] = typer.Option(None, "--bundle", metavar="FILE.tar.gz",
                                          help="also write the report and the raw logs it quoted, redacted"),
    no_redact_uuids: bool = typer.Option(False, "--no-redact-uuids", help="keep GPU UUIDs"),
) -> None:
    """A diagnostic report to attach to a bug report: pod, GPUs, versions, logs, and every check."""
    from podcheck import diagnostics, runner
    from podcheck.cli import load_config
    from podcheck.plugin import PROFILES
    from podcheck.pod import Pod
    from podcheck.reports import bundle as bundle_mod
    from podcheck.reports import html, json_report, markdown
    from podcheck.reports.redact import Redactor

    if fmt not in REPORT_FORMATS:
        raise _usage(f"--format must be one of {', '.join(REPORT_FORMATS)}, got {fmt!r}")
    if profile not in PROFILES:
        raise _usage(f"--profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    if "," in hosts:
        raise _usage("report takes one host; run it once per host")
    cfg = load_config(config)
    target = runner.Target.parse(hosts, ssh_config=_str(ssh_config), ssh_identity_file=_str(ssh_identity_file))
    try:
        if not target.is_local:
            runner._preflight(cfg, target)
        pod = Pod(cfg, target.host())
    except (runner.RunError, RuntimeError, ValueError) as exc:
        raise _usage(f"no report: {exc}") from None
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
    from podcheck import manifest as manifest_mod
    from podcheck.files import write_atomic

    try:
        doc = manifest_mod.build(sources)
    except manifest_mod.ManifestError as exc:
        raise _usage(str(exc)) from None
    text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
    if output is None:
        typer.echo(text, nl=False)
        return
    write_atomic(output, text)
    count = sum(len(files) for files in doc["sources"].values())
    typer.echo(f"podcheck: {count} file(s) of {len(sources)} source(s) in {output}", err=True)


@contextmanager
def _writable(path: Any):
    """A file that cannot be written is one line and exit 2, not a traceback."""
    try:
        yield
    except OSError as exc:
        raise _usage(f"cannot write {path}: {exc.strerror or exc}") from None


def _str(path: Optional[Path]) -> Optional[str]:
    return str(path) if path else None
