"""Fleet `--fix`: check every pod at once (podcheck.fleet.run), then repair the failing ones,
`max_parallel` pods at a time, rolling, each in its own process (`python -m
podcheck.fleet.fix_one`) running podcheck.fixer from the fleet check's results.

After `max_fail` pods whose repair did not end healthy, no new pod is started; pods left out say
so in their repairs. Each pod's fixer takes its volume's lock (podcheck.lock), so pods sharing a
network volume never repair it at the same time: the second waits, then looks again.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from podcheck.config import Config
from podcheck.fleet import run as fleet_run
from podcheck.fleet.inventory import FleetHost
from podcheck.reports.fleet import changes
from podcheck.results import CheckResult, RepairResult, Report

DEFAULT_MAX_PARALLEL = 4


@dataclass
class Options:
    check: fleet_run.Options = field(default_factory=fleet_run.Options)
    max_parallel: int = DEFAULT_MAX_PARALLEL
    max_fail: int | None = None
    dry_run: bool = False
    safe_only: bool = False
    background: bool | None = None
    ansible_inventory: str | None = None
    timeout: float = 7200.0  # one pod's whole fix (its own commands have their own timeouts)


def run(base: Config, hosts: list[FleetHost], opts: Options, say: Callable[[str], None] | None = None) -> list[Report]:
    """Every pod's after-report (with `before` and `repairs` where repairs ran)."""
    say = say or (lambda line: print(line, file=sys.stderr, flush=True))
    checked = fleet_run.run(base, hosts, opts.check)
    configs = fleet_run.host_configs(base, hosts)
    out: dict[str, Report] = {r.host: r for r in checked}
    due = [h for h, r in zip(hosts, checked) if not r.unreachable and not r.ok]
    for h, r in zip(hosts, checked):
        if r.unreachable:
            say(f"{h.name}: unreachable, not repaired ({r.unreachable})")
        elif r.ok:
            r.before, r.repairs = list(r.results), []
    failed = 0
    lock = threading.Lock()
    with tempfile.TemporaryDirectory(prefix="podcheck-fleetfix-") as tmp, \
            ThreadPoolExecutor(max_workers=max(1, opts.max_parallel)) as pool:
        pending = list(due)
        running: dict[Future, FleetHost] = {}
        while pending or running:
            while pending and len(running) < opts.max_parallel and (opts.max_fail is None or failed < opts.max_fail):
                host = pending.pop(0)
                say(f"{host.name}: repairing")
                running[pool.submit(_fix_one, host, configs[host.name], out[host.name], opts, Path(tmp))] = host
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in done:
                host = running.pop(future)
                report = future.result()
                out[host.name] = report
                with lock:
                    if not report.ok:
                        failed += 1
                say(f"{host.name}: {changes(report)}")
        for host in pending:  # left out after --max-fail
            before = out[host.name]
            before.before = list(before.results)
            before.repairs = [RepairResult("fleet", "skipped", f"not started: --max-fail {opts.max_fail} reached")]
    return [out[h.name] for h in hosts]


def _fix_one(host: FleetHost, config: Config, before: Report, opts: Options, tmp: Path) -> Report:
    """One pod's fixer in its own process; a crash or timeout is that pod's failed repair."""
    job = {"name": host.name, "spec": _spec(host, opts), "options": host.options,
           "config": {"data": config.as_dict(), "source": config.source},
           "profile": opts.check.profile, "select": opts.check.select, "dry_run": opts.dry_run,
           "safe_only": opts.safe_only, "background": opts.background,
           "given": [r.as_dict() | {"description": r.description} for r in before.results]}
    path = tmp / f"job-{abs(hash(host.name))}.json"
    path.write_text(json.dumps(job))
    try:
        done = subprocess.run([sys.executable, "-m", "podcheck.fleet.fix_one", str(path)], capture_output=True,
                              text=True, timeout=opts.timeout, stdin=subprocess.DEVNULL, env=os.environ.copy())
        data = json.loads(done.stdout) if done.returncode in (0, 1) else None
        why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
    except subprocess.TimeoutExpired:
        data, why = None, f"did not finish within {opts.timeout:g} s"
    except ValueError:
        data, why = None, "its fixer printed no report"
    if data is None:
        failed = Report(host=host.name, profile=opts.check.profile, results=before.results,
                        before=list(before.results), repairs=[RepairResult("fleet", "failed", f"fix run failed: {why}")])
        return failed
    return from_dict(data, host.name)


def _spec(host: FleetHost, opts: Options) -> str:
    """The URL the pod's fixer connects with: Ansible hosts are resolved again by testinfra, so
    their ssh arguments and keys come from the inventory (a Target carries no ssh_extra_args)."""
    return host.via or host.spec


def from_dict(data: dict[str, Any], name: str) -> Report:
    """A Report back from its JSON (podcheck/1)."""
    def results(rows):
        return [CheckResult(**{k: v for k, v in r.items() if k in CheckResult.__dataclass_fields__}) for r in rows]
    return Report(host=name, profile=data["profile"], duration_s=data.get("duration_s", 0.0),
                  results=results(data["results"]),
                  repairs=[RepairResult(**r) for r in data.get("repairs", [])],
                  before=results(data["before"]) if "before" in data else None)
