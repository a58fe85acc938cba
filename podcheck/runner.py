"""Run the checks in-process: one pytest session per host, results into one Report per host."""
from __future__ import annotations

import io
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from podcheck import plugin
from podcheck.config import Config
from podcheck.host.pod import Pod
from podcheck.results import Report


class RunError(Exception):
    """No verdict could be reached (a check module that does not import, nothing selected...)."""


@dataclass
class Target:
    """Where the checks run: a testinfra host spec, with what that backend needs."""

    spec: str = "local://"
    ssh_config: str | None = None
    ssh_identity_file: str | None = None

    @classmethod
    def parse(cls, spec: str, **kw) -> "Target":
        return cls(spec.strip(), **kw)

    @property
    def is_local(self) -> bool:
        return self.spec in ("local://", "local")

    def host(self):
        """The testinfra host for this target (ValueError/RuntimeError on a bad spec)."""
        import testinfra

        spec, connection = self.spec, None
        if spec.startswith("chroot://"):
            spec, connection = spec[len("chroot://"):], "chroot"
        return testinfra.get_host(spec, connection=connection, ssh_config=self.ssh_config,
                                  ssh_identity_file=self.ssh_identity_file)

    def pytest_args(self) -> list[str]:
        spec = self.spec
        if spec.startswith("chroot://"):  # testinfra 10.2.2 cannot parse this URL form itself
            args = ["--connection=chroot", f"--hosts={spec[len('chroot://'):]}"]
        else:
            args = [f"--hosts={spec}"]
        if self.ssh_config:
            args.append(f"--ssh-config={self.ssh_config}")
        if self.ssh_identity_file:
            args.append(f"--ssh-identity-file={self.ssh_identity_file}")
        return args


@dataclass
class _Session:
    """Hands the loaded config to the plugin and collects what pytest could not run."""

    config: Config
    probe_cache: object = None
    errors: list[str] = field(default_factory=list)
    pytest_config: pytest.Config | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_configure(self, config: pytest.Config) -> None:
        config.stash[plugin.CONFIG] = self.config
        if self.probe_cache is not None:
            config.stash[plugin.PROBE_CACHE] = self.probe_cache
        self.pytest_config = config

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            text = str(report.longrepr).strip().splitlines()
            self.errors.append(f"{report.nodeid}: {text[-1] if text else 'collection failed'}")


def checks_dir() -> Path:
    import podcheck.checks
    return Path(podcheck.checks.__file__).parent


def _base_args() -> list[str]:
    """pytest, quiet and self-contained: only testinfra and our plugin, no ini, no conftest, no cache."""
    where = str(checks_dir())
    return [where, "--disable-plugin-autoload", "-p", "testinfra.plugin", "-p", "podcheck.plugin",
            "-p", "no:cacheprovider", "-p", "no:stepwise", "-p", "no:terminal", "--noconftest",
            "--import-mode=importlib", f"--rootdir={where}", "-o", "addopts=", "-o", "python_files=test_*.py"]


def run(config: Config, target: Target | None = None, profile: str = "runtime",
        select: list[str] | None = None, probe_cache: object = None) -> Report:
    """Run the selected checks against one target and return its Report."""
    target = target or Target()
    if not target.is_local:
        preflight(config, target)
    session = _Session(config, probe_cache)
    args = [*_base_args(), "--assert=plain", f"--pod-profile={profile}",
            *[f"--pod-select={s}" for s in select or []], *target.pytest_args()]
    started = time.time()
    sink = io.StringIO()
    with redirect_stdout(sink), redirect_stderr(sink):
        code = pytest.main(args, plugins=[session])
    duration = time.time() - started
    results = session.pytest_config.stash.get(plugin.RESULTS, []) if session.pytest_config else []
    rank = session.pytest_config.stash.get(plugin.RANK, {}) if session.pytest_config else {}
    results = sorted(results, key=lambda r: rank.get(r.id, (len(plugin.AREAS), 0)))  # catalogue order
    if session.errors:
        raise RunError("; ".join(session.errors))
    if code == pytest.ExitCode.NO_TESTS_COLLECTED or (code == pytest.ExitCode.OK and not results):
        what = ", ".join(select or []) or "any check"
        raise RunError(f"no check matches {what} in profile {profile} (see `podcheck list`)")
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        lines = [ln for ln in sink.getvalue().splitlines() if ln.strip()]
        raise RunError(lines[-1] if lines else f"pytest stopped with exit code {int(code)}")
    host = "local" if target.is_local else target.spec
    gatherings = session.pytest_config.stash.get(plugin.GATHERINGS, {})
    gathered = [g.facts for g in gatherings.values() if g.facts is not None]  # only if a check asked
    return Report(host=host, profile=profile, started=started, duration_s=duration, results=results,
                  facts=gathered[0].as_dict() if gathered else None)


def preflight(config: Config, target: Target) -> None:
    """A remote host that does not answer gives no verdict, not a wall of misleading failures."""

    try:
        host = target.host()
    except Exception as exc:  # testinfra raises plain errors on bad specs
        raise RunError(f"bad host {target.spec}: {exc}") from None
    ran = Pod(config, host).run("true")
    if not ran.ok:
        detail = (ran.stderr or ran.stdout).strip().splitlines()
        raise RunError(f"cannot reach {target.spec}: {detail[-1] if detail else ran.why()}")


def catalogue(config: Config) -> list[plugin.CheckSpec]:
    """Every check podcheck has, in file order, without running any."""
    found: list[plugin.CheckSpec] = []

    class Lister(_Session):
        @pytest.hookimpl(tryfirst=True)
        def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
            found.extend(s for s in map(plugin.spec_of, items) if s)

    args = [*_base_args(), "--collect-only"]
    lister = Lister(config)
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        pytest.main(args, plugins=[lister])
    if lister.errors:
        raise RunError("; ".join(lister.errors))
    rank = plugin.catalogue_rank(found)
    return sorted(found, key=lambda s: rank[s.id])
