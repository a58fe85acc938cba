"""The `podcheck` command (typer). Exit codes: 0 all applicable checks passed, 1 something failed,
2 a usage or config error, or no verdict could be reached. Bad input is one line on stderr."""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import typer

try:  # typer vendors click as typer._click; older typers use click itself
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover
    from click.exceptions import ClickException

from podcheck import __version__, facts, runner
from podcheck.cli import outputs
from podcheck.cli.common import (
    ConfigOpt,
    HostOpt,
    SshConfigOpt,
    UsageFailure,
    as_str,
    default_redactor,
    load_config,
)
from podcheck.fix import fixer
from podcheck.fix.registry import registry
from podcheck.host.pod import Pod
from podcheck.plugin import PROFILES
from podcheck.services import serve, watch

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="Health checks and repairs for GPU pods running ComfyUI.")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"podcheck {__version__}")
        raise typer.Exit(0)


@app.callback(invoke_without_command=True)
@app.command("check")
def check(
    ctx: typer.Context,
    config: Optional[Path] = ConfigOpt,
    profile: str = typer.Option("runtime", "--profile", help="image | boot | runtime"),
    select: List[str] = typer.Option([], "--select", help="check id, area or glob; repeatable"),
    hosts: str = typer.Option("local://", "--hosts", help="testinfra host URLs, comma-separated (ssh://pod, chroot:///rootfs)"),
    ssh_config: Optional[Path] = typer.Option(None, "--ssh-config", help="ssh_config for ssh:// hosts"),
    ssh_identity_file: Optional[Path] = typer.Option(None, "--ssh-identity-file", help="ssh key for ssh:// hosts"),
    json_out: Optional[str] = typer.Option(None, "--json", metavar="FILE|-", help="write the JSON report; - prints only JSON"),
    junit_xml: Optional[Path] = typer.Option(None, "--junit-xml", help="write JUnit XML (one testcase per check)"),
    prometheus: Optional[Path] = typer.Option(None, "--prometheus", help="write a Prometheus textfile (node_exporter)"),
    fmt: str = typer.Option("table", "--format", help="what to print: table | json | md | html | junit | prometheus"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="print failures only"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="print durations and descriptions"),
    fix: bool = typer.Option(False, "--fix", help="repair what fails (also installs a bare pod), then check again"),
    dry_run: bool = typer.Option(False, "--dry-run", help="with --fix: print the plan and its commands, change nothing"),
    safe_only: bool = typer.Option(False, "--safe-only", help="with --fix: run only repairs whose blast radius is safe"),
    background: Optional[bool] = typer.Option(None, "--background/--no-background",
                                              help="with --fix: run slow repairs detached (default: [fix] background)"),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="print the version"),
) -> None:
    """Run the checks and print a table (the default command)."""
    if ctx.invoked_subcommand:
        return

    if profile not in PROFILES:
        raise UsageFailure(f"--profile must be one of {', '.join(PROFILES)}, got {profile!r}")
    cfg = load_config(config)
    specs = [h for h in hosts.split(",") if h.strip()] or ["local://"]
    targets = [runner.Target.parse(h, ssh_config=as_str(ssh_config), ssh_identity_file=as_str(ssh_identity_file))
               for h in specs]
    if (dry_run or safe_only or background is not None) and not fix:
        raise UsageFailure("--dry-run, --safe-only and --background apply only with --fix")
    try:
        if fix:
            opts = fixer.Options(profile=profile, select=select, dry_run=dry_run, safe_only=safe_only,
                                 background=cfg.fix.background if background is None else background)
            reports = [fixer.fix(cfg, t, opts) for t in targets]
        else:
            reports = [runner.run(cfg, t, profile=profile, select=select) for t in targets]
    except runner.RunError as exc:
        raise UsageFailure(f"no verdict: {exc}") from None
    outputs.write_check_outputs(reports, fmt, json_out, junit_xml, prometheus, quiet=quiet, verbose=verbose)
    raise typer.Exit(0 if all(r.ok for r in reports) else 1)


@app.command("list")
def list_checks(
    config: Optional[Path] = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="print the catalogue as JSON"),
    verbose: bool = typer.Option(False, "-v", "--verbose", help="also each check's file::function and its repair's module::class"),
) -> None:
    """The catalogue: id, profiles, repair (or remedy) and what each check verifies."""
    try:
        specs = runner.catalogue(load_config(config))
    except runner.RunError as exc:
        raise UsageFailure(str(exc)) from None
    repairs = registry()
    rows = [{"id": s.id, "area": s.area, "profiles": list(s.profiles), "repair": s.repair, "remedy": s.remedy,
             "needs": list(s.needs), "description": s.description, "check": f"checks/{s.where}",
             "repair_class": _where(repairs[s.repair]) if s.repair in repairs else None} for s in specs]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    columns = ["id", "profiles", "repair", "description"] + (["check", "repair_class"] if verbose else [])
    table = [["ID", "PROFILES", "REPAIR", "WHAT IT VERIFIES"] + (["CHECK", "REPAIR CLASS"] if verbose else [])]
    table += [[str(r[c]) if c not in ("profiles", "repair", "repair_class") else
               ",".join(r[c]) if c == "profiles" else (r[c] or "-") for c in columns] for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(len(columns))]
    for row in table:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _where(repair: object) -> str:
    """repairs/<area>.py::Class of a registered repair."""
    cls = type(repair)
    return f"{cls.__module__.replace('podcheck.', '').replace('.', '/')}.py::{cls.__name__}"


def _pod(config: Optional[Path], hosts: str, ssh_config: Optional[Path]):
    """The pod behind one --hosts URL, or one line and exit 2 when it cannot be reached."""

    try:
        pod = fixer.connect(load_config(config), runner.Target.parse(hosts, ssh_config=as_str(ssh_config)))
    except (ValueError, RuntimeError) as exc:
        raise UsageFailure(f"--hosts {hosts}: {exc}") from None
    reached = pod.run("true")
    if not reached.ok:
        detail = (reached.stderr or reached.stdout).strip().splitlines()
        raise UsageFailure(f"cannot reach {hosts}: {detail[-1] if detail else reached.why()}")
    return pod


@app.command("status")
def status(config: Optional[Path] = ConfigOpt, hosts: str = HostOpt, ssh_config: Optional[Path] = SshConfigOpt,
           as_json: bool = typer.Option(False, "--json", help="print the status as JSON")) -> None:
    """Install markers, the fix lock, background repairs with their log tail, and the last --fix."""

    data = fixer.status(_pod(config, hosts, ssh_config))
    text = json.dumps(data, indent=2) + "\n" if as_json else fixer.render_status(data)
    typer.echo(default_redactor().text(text), nl=False)


@app.command("reset")
def reset(ids: List[str] = typer.Argument(None, metavar="[REPAIR_ID]...", help="repairs to forget (default: all)"),
          config: Optional[Path] = ConfigOpt, hosts: str = HostOpt, ssh_config: Optional[Path] = SshConfigOpt) -> None:
    """Forget install markers, so the next --fix runs those repairs again."""

    try:
        gone = fixer.reset(_pod(config, hosts, ssh_config), list(ids or []))
    except ValueError as exc:
        raise UsageFailure(str(exc)) from None
    typer.echo(f"forgot the markers of {', '.join(gone)}" if gone else "no marker to forget")


@app.command("facts")
def show_facts(
    config: Optional[Path] = ConfigOpt,
    hosts: str = typer.Option("local://", "--hosts", help="one testinfra host URL"),
    ssh_config: Optional[Path] = typer.Option(None, "--ssh-config", help="ssh_config for ssh:// hosts"),
) -> None:
    """Print what the probe and NVML see, as JSON (to record a GPU machine's facts for tests)."""

    try:
        host = runner.Target.parse(hosts, ssh_config=as_str(ssh_config)).host()
    except Exception as exc:  # testinfra raises plain RuntimeError/ValueError on bad host specs
        raise UsageFailure(f"--hosts {hosts}: {exc}") from None
    default_redactor().write(None, json.dumps(facts.gather(Pod(load_config(config), host)).as_dict(), indent=2) + "\n")


app.command("report")(outputs.report)
app.command("manifest")(outputs.manifest)


@app.command("watch")
def watch_cmd(
    config: Optional[Path] = ConfigOpt,
    interval: Optional[float] = typer.Option(None, "--interval", help="seconds between runs (default [watch] interval_seconds, 30)"),
    select: List[str] = typer.Option([], "--select", help="check id, area or glob; repeatable (default [watch] select)"),
) -> None:
    """Re-run checks every --interval and apply the unattended repairs, until SIGTERM/SIGINT."""

    try:
        raise typer.Exit(watch.main(load_config(config), interval, select))
    except watch.CannotStart as exc:
        raise UsageFailure(str(exc)) from None


@app.command("serve")
def serve_cmd(
    config: Optional[Path] = ConfigOpt,
    port: Optional[int] = typer.Option(None, "--port", help="TCP port (default [serve] port, 8765)"),
    listen: Optional[str] = typer.Option(None, "--listen", help="address to listen on (default 127.0.0.1; 0.0.0.0 widens it)"),
    profile: str = typer.Option("runtime", "--profile", help="image | boot | runtime"),
    select: List[str] = typer.Option([], "--select", help="check id, area or glob; repeatable"),
) -> None:
    """Serve /healthz, /api/status and a status page (read-only) until SIGTERM/SIGINT."""

    try:
        raise typer.Exit(serve.main(load_config(config), port, listen, select, profile, echo=typer.echo))
    except watch.CannotStart as exc:
        raise UsageFailure(str(exc)) from None



def main(argv: Optional[list[str]] = None) -> int:
    """Console entry point: run the app, turn bad input into one line and exit code 2."""
    try:
        code = app(args=argv, prog_name="podcheck", standalone_mode=False)
    except UsageFailure as exc:
        typer.echo(f"podcheck: error: {default_redactor().text(str(exc))}", err=True)
        return 2
    except ClickException as exc:
        typer.echo(f"podcheck: error: {default_redactor().text(exc.format_message())}", err=True)
        return 2
    except typer.Abort:
        return 130
    return code if isinstance(code, int) else 0
