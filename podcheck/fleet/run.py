"""Check a fleet: one pytest session, pods spread over pytest-xdist workers, one Report per pod.

The controller writes a plan (every pod's URL, options and own config, after `[hosts]` overrides)
for podcheck.fleet.worker, starts `pytest -n N` (one pod per work unit), and rebuilds each pod's
CheckResults from the reports the workers send back. A pod that could not be reached (or was
lost mid-run, or outlived its deadline) gets a Report with `unreachable` set and no results.
"""
from __future__ import annotations

import io
import json
import tempfile
import time
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from podcheck import config as config_mod
from podcheck import runner
from podcheck.config import Config
from podcheck.fleet import sshmux
from podcheck.fleet.inventory import FleetHost
from podcheck.results import CheckResult, Report

DEFAULT_PARALLEL = 8
CONNECT_TIMEOUT = 10.0


@dataclass
class Options:
    profile: str = "runtime"
    select: list[str] = field(default_factory=list)
    parallel: int = DEFAULT_PARALLEL
    connect_timeout: float = CONNECT_TIMEOUT  # ssh connect + handshake, and the reachability probe
    host_timeout: float = 0.0  # a pod's checks stop being started after this long (0: no limit)


def host_configs(base: Config, hosts: list[FleetHost]) -> dict[str, Config]:
    """Each pod's config: the file's tables, then its Ansible vars and `[hosts]` tables."""
    out = {}
    for h in hosts:
        out[h.name] = config_mod.load(base.source, host=h.match_names(), host_vars=h.host_vars) \
            if base.source or h.host_vars else base
    return out


def config_of(base: Config, spec: str) -> Config:
    """The config of the one host `spec` (its `[hosts]` tables applied), for a single-host run."""
    return host_configs(base, [FleetHost(spec, spec)])[spec]


def with_mux(hosts: list[FleetHost], mux: sshmux.Multiplexer, connect_timeout: float) -> list[FleetHost]:
    """The hosts with ssh:// ones sent through the multiplexer's wrapper config."""
    out = []
    for h in hosts:
        options = dict(h.options)
        if sshmux.uses_ssh(h.spec):
            options["ssh_config"] = mux.wrap(options.get("ssh_config"))
            options["timeout"] = max(1, int(connect_timeout))
        elif h.spec.startswith("paramiko://"):
            options["timeout"] = max(1, int(connect_timeout))
        out.append(FleetHost(h.name, h.spec, options, h.host_vars, h.via))
    return out


class _Collector:
    """Controller side: CheckResults and lost pods from the workers' reports."""

    def __init__(self) -> None:
        self.results: dict[str, list[tuple[tuple, CheckResult]]] = {}  # (catalogue rank, result)
        self.lost: dict[str, dict[str, Any]] = {}
        self.errors: list[str] = []
        self.crashed: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "podcheck_result", None)
        lost = getattr(report, "podcheck_lost", None)
        if data is None:
            if report.failed and report.when == "call" and not hasattr(report, "podcheck_lost"):
                self.crashed.append(report.nodeid)  # xdist: "worker crashed while running ..."
            return
        data = dict(data)
        host, rank = data.pop("host"), tuple(data.pop("rank", (0, 0)))
        if lost is not None:
            self.lost.setdefault(host, lost)
            return
        data.pop("duration_s", None)
        self.results.setdefault(host, []).append((rank, CheckResult(**data, duration_s=report.duration)))

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        if report.failed:
            text = str(report.longrepr).strip().splitlines()
            self.errors.append(f"{report.nodeid}: {text[-1] if text else 'collection failed'}")


def run(base: Config, hosts: list[FleetHost], opts: Options) -> list[Report]:
    """Check every pod, `opts.parallel` at once; one Report per pod, in the order given."""
    configs = host_configs(base, hosts)
    with sshmux.Multiplexer() as mux, tempfile.TemporaryDirectory(prefix="podcheck-fleet-") as tmp:
        reached = with_mux(hosts, mux, opts.connect_timeout)
        plan = {"config": {"data": base.as_dict(), "source": base.source},
                "connect_timeout": opts.connect_timeout, "host_timeout": opts.host_timeout,
                "hosts": [{"name": h.name, "spec": h.spec, "options": h.options,
                           "config": configs[h.name].as_dict()} for h in reached]}
        plan_path = Path(tmp) / "plan.json"
        plan_path.write_text(json.dumps(plan))
        workers = max(1, min(opts.parallel, len(hosts)))
        args = [*_without_testinfra(runner._base_args()), "-p", "xdist.plugin", "-p", "podcheck.plugin",
                "-p", "podcheck.fleet.worker", f"--pod-fleet={plan_path}", "--assert=plain",
                f"--pod-profile={opts.profile}", *[f"--pod-select={s}" for s in opts.select]]
        args += ["-n", str(workers)] if workers > 1 else ["-p", "no:xdist"]
        collector = _Collector()
        started = time.time()
        sink = io.StringIO()
        with redirect_stdout(sink), redirect_stderr(sink):
            code = pytest.main(args, plugins=[collector])
        duration = time.time() - started
    if collector.errors:
        raise runner.RunError("; ".join(collector.errors))
    if code not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED) and not collector.results:
        if code == pytest.ExitCode.NO_TESTS_COLLECTED:
            what = ", ".join(opts.select) or "any check"
            raise runner.RunError(f"no check matches {what} in profile {opts.profile} (see `podcheck list`)")
        lines = [ln for ln in sink.getvalue().splitlines() if ln.strip()]
        raise runner.RunError(lines[-1] if lines else f"pytest stopped with exit code {int(code)}")
    return [_report(h, collector, opts.profile, started, duration) for h in hosts]


def _without_testinfra(args: list[str]) -> list[str]:
    """runner's pytest arguments less `-p testinfra.plugin` and `-p podcheck.plugin` (re-added in order)."""
    out: list[str] = []
    skip = False
    for i, arg in enumerate(args):
        if skip:
            skip = False
            continue
        if arg == "-p" and i + 1 < len(args) and args[i + 1] in ("testinfra.plugin", "podcheck.plugin"):
            skip = True
            continue
        out.append(arg)
    return out


def _report(host: FleetHost, collector: _Collector, profile: str, started: float, duration: float) -> Report:
    lost = collector.lost.get(host.name)
    results = [r for _, r in sorted(collector.results.get(host.name, []), key=lambda pair: pair[0])]  # catalogue order
    if lost is not None:
        return Report(host=host.name, profile=profile, started=started, duration_s=lost["after_s"],
                      results=results, unreachable=lost["reason"])
    return Report(host=host.name, profile=profile, started=started,
                  duration_s=sum(r.duration_s for r in results) or duration, results=results)


def summary(reports: list[Report]) -> dict[str, Any]:
    """How many pods passed, failed, and could not be reached."""
    gone = [r for r in reports if r.unreachable]
    failed = [r for r in reports if not r.unreachable and not r.ok]
    return {"pods": len(reports), "passed": len(reports) - len(gone) - len(failed), "failed": len(failed),
            "unreachable": len(gone)}
