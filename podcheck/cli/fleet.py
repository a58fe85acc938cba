"""`podcheck --hosts <fleet>`: expand the inventory, check (or roll `--fix` over) the pods, exit code.

Exit codes of a fleet run: 0 every pod reached and passed; 1 a reached pod failed; 4 some pod could
not be reached (and every reached one passed); 5 both; 2 bad input or no verdict at all.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from podcheck import runner
from podcheck.cli.common import UsageFailure
from podcheck.config import Config, ConfigError
from podcheck.fleet import fix, inventory
from podcheck.fleet import run as fleet_run
from podcheck.results import Report

FAILED, UNREACHABLE = 1, 4


@dataclass
class Given:
    """What the command line said about the fleet."""

    profile: str = "runtime"
    select: list[str] = field(default_factory=list)
    ssh_config: Optional[str] = None
    ssh_identity_file: Optional[str] = None
    ansible_inventory: Optional[str] = None
    parallel: Optional[int] = None
    connect_timeout: float = fleet_run.CONNECT_TIMEOUT
    host_timeout: float = 0.0
    fix: bool = False
    dry_run: bool = False
    safe_only: bool = False
    background: Optional[bool] = None
    max_parallel: Optional[int] = None
    max_fail: Optional[int] = None


def hosts_of(hosts: str, given: Given) -> list[inventory.FleetHost]:
    try:
        return inventory.expand(hosts, given.ssh_config, given.ssh_identity_file, given.ansible_inventory)
    except inventory.InventoryError as exc:
        raise UsageFailure(str(exc)) from None


def options(given: Given) -> fleet_run.Options:
    return fleet_run.Options(profile=given.profile, select=list(given.select),
                             parallel=given.parallel or fleet_run.DEFAULT_PARALLEL,
                             connect_timeout=given.connect_timeout, host_timeout=given.host_timeout)


def check(cfg: Config, hosts: str, given: Given) -> list[Report]:
    """Every pod's Report (unreachable ones included); UsageFailure when there is no verdict at all."""
    pods = hosts_of(hosts, given)
    try:
        if given.fix:
            return fix.run(cfg, pods, fix.Options(
                check=options(given), max_parallel=given.max_parallel or given.parallel or fix.DEFAULT_MAX_PARALLEL,
                max_fail=given.max_fail, dry_run=given.dry_run, safe_only=given.safe_only,
                background=given.background, ansible_inventory=given.ansible_inventory))
        return fleet_run.run(cfg, pods, options(given))
    except runner.RunError as exc:
        raise UsageFailure(f"no verdict: {exc}") from None
    except ConfigError as exc:
        raise UsageFailure(str(exc)) from None


def exit_code(reports: list[Report]) -> int:
    code = 0
    if any(not r.unreachable and not r.ok for r in reports):
        code |= FAILED
    if any(r.unreachable for r in reports):
        code |= UNREACHABLE
    return code
