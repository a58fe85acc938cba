"""The pytest plugin of a fleet run, loaded in the controller and every pytest-xdist worker.

It stands in for testinfra's plugin: `_testinfra_host` / `host` are parametrized with the pods of
the plan (ids are the pod names, so two pods on one IP stay apart), and the controller's xdist
scheduler (PodScheduling) makes each pod one work unit, so a pod's checks run on one worker, in
order, and its probe runs once. (`xdist_group` + `--dist loadgroup` cannot do it here: xdist 3.8
renames `item._nodeid`, which pytest 9.2 no longer reads, so the groups are silently ignored.) Before a pod's first check the worker asks it `true`; a pod that does not answer, that
stops answering after a failing check, or that outlives `host_timeout`, has its remaining checks
skipped and marked, and the controller reports the pod (not its checks) as unreachable.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from podcheck import plugin
from podcheck.config import from_data
from podcheck.host.pod import Pod

PLAN = pytest.StashKey[dict]()
STATES = pytest.StashKey[dict]()


@dataclass
class PodState:
    """What this worker knows about one pod's reachability."""

    pod: Any = None
    started: float | None = None
    lost: str | None = None  # why the pod counts as unreachable
    kind: str = "unreachable"  # or "timeout"
    lost_after: float = 0.0  # seconds from the pod's first check to the verdict "unreachable"

    def give_up(self, why: str | None, kind: str = "unreachable") -> None:
        if why is not None and self.lost is None:
            self.lost, self.kind = why, kind
            self.lost_after = time.monotonic() - (self.started or time.monotonic())


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.getgroup("podcheck").addoption("--pod-fleet", default=None, help="fleet plan (JSON) of podcheck.fleet.run")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    path = config.getoption("pod_fleet")
    if not path:
        return
    plan = json.loads(Path(path).read_text())
    config.stash[PLAN] = plan
    config.stash[STATES] = {}
    source = plan["config"]["source"]
    config.stash[plugin.CONFIG] = from_data(plan["config"]["data"], source)
    config.stash[plugin.HOST_CONFIGS] = {h["name"]: from_data(h["config"], source) for h in plan["hosts"]}


def build_host(name: str, spec: str, options: dict[str, Any]):
    """The testinfra host of one pod, named `name` in ids and results."""
    import testinfra

    if spec.startswith("chroot://"):
        host = testinfra.get_host(spec[len("chroot://"):], connection="chroot")
    else:
        host = testinfra.get_host(spec, **options)
    host.backend.get_pytest_id = lambda: name  # testinfra's id drops the port: ssh://127.0.0.1
    return host


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    plan = metafunc.config.stash.get(PLAN, None)
    if plan is None or "_testinfra_host" not in metafunc.fixturenames:
        return
    hosts = [build_host(h["name"], h["spec"], h["options"]) for h in plan["hosts"]]
    metafunc.parametrize("_testinfra_host", hosts, ids=[h["name"] for h in plan["hosts"]],
                         scope="module", indirect=True)


@pytest.fixture(scope="module")
def _testinfra_host(request: pytest.FixtureRequest):
    return request.param


@pytest.fixture(scope="module")
def host(_testinfra_host):
    """The testinfra host of the pod this check runs on."""
    return _testinfra_host


def pytest_xdist_make_scheduler(config: pytest.Config, log: Any):
    """One work unit per pod (controller side)."""
    if PLAN not in config.stash:
        return None
    from xdist.scheduler import LoadScopeScheduling

    class PodScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            """`test_gpu.py::test_driver[ssh://pod-1]` -> `ssh://pod-1` (the only parameter is the pod)."""
            head, _, rest = nodeid.partition("[")
            return rest.rsplit("]", 1)[0] if rest else head

    return PodScheduling(config, log)


def _name(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("_testinfra_host") if callspec else None
    return host.backend.get_pytest_id() if host is not None else None


def _state(item: pytest.Item) -> PodState | None:
    if PLAN not in item.config.stash:
        return None
    name = _name(item)
    if name is None:
        return None
    return item.config.stash[STATES].setdefault(name, PodState())


def _reach(item: pytest.Item, state: PodState) -> str | None:
    """None when the pod answers `true` within the connect timeout, else why not."""
    plan = item.config.stash[PLAN]
    if state.pod is None:
        name = _name(item)
        config = item.config.stash[plugin.HOST_CONFIGS].get(name) or item.config.stash[plugin.CONFIG]
        state.pod = Pod(config, item.callspec.params["_testinfra_host"])  # type: ignore[attr-defined]
    if state.pod.is_local:
        return None
    ran = state.pod.run("true", timeout=float(plan["connect_timeout"]))
    if ran.ok:
        return None
    detail = [ln for ln in (ran.stderr or ran.stdout).strip().splitlines() if ln.strip()]
    if ran.timed_out or ran.stderr == "host did not answer":
        return f"no answer within {plan['connect_timeout']:g} s"
    return detail[-1][:300] if detail else ran.why()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    state = _state(item)
    if state is None:
        return
    if state.started is None:
        state.started = time.monotonic()
        state.give_up(_reach(item, state))
    limit = float(item.config.stash[PLAN]["host_timeout"])
    if state.lost is None and limit and time.monotonic() - state.started > limit:
        state.give_up(f"timed out: checks still running after {limit:g} s", "timeout")
    if state.lost is not None:
        pytest.skip(f"{state.kind}: {state.lost}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    state = _state(item)
    if state is None:
        return
    report = outcome.get_result()
    if state.lost is None and report.failed and report.when in ("setup", "call"):
        state.give_up(_reach(item, state))  # a failure may only be the pod going away
    if state.lost is not None:
        report.podcheck_lost = {"kind": state.kind, "reason": state.lost, "after_s": round(state.lost_after, 3)}
