"""The pytest plugin: the `podcheck` marker, profiles and selection, prerequisite ordering and
blocking, the `cfg` / `pod` / `facts` fixtures, and one CheckResult per check.

A check is a test function in checks/ marked with its id, its repair and what it needs first::

    @pytest.mark.podcheck(id="gpu.torch_sees_gpu", repair="torch", needs=["gpu.driver", "gpu.torch_build"])
    def test_torch_sees_gpu(facts): ...

The plugin is inert for tests without the marker, so it can stay installed beside other suites.
"""
from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import pytest

from podcheck import config as config_mod
from podcheck import gates
from podcheck.domain import gpu
from podcheck.facts import Facts, Gathering, ProbeCache
from podcheck.host.pod import Pod
from podcheck.results import CheckResult

PROFILES = ("image", "boot", "runtime")
#: The catalogue's order: areas from the pod up to what runs on it; within an area, file order.
AREAS = ("pod", "system", "gpu", "attention", "comfyui", "isolation", "sync", "caches", "memory", "disk",
         "training", "image")
DEFAULT_PROFILES = ("boot", "runtime")

CONFIG = pytest.StashKey[config_mod.Config]()
RESULTS = pytest.StashKey[list]()
OUTCOMES = pytest.StashKey[dict]()
PODS = pytest.StashKey[dict]()
GATHERINGS = pytest.StashKey[dict]()
NEEDS_FACTS = pytest.StashKey[bool]()
PROBE_CACHE = pytest.StashKey[ProbeCache]()
SPEC = pytest.StashKey["CheckSpec"]()
PHASES = pytest.StashKey[dict]()
NOT_RUN = pytest.StashKey[str]()
RANK = pytest.StashKey[dict]()
HOST_CONFIGS = pytest.StashKey[dict]()  # pod name -> its Config, in a fleet run (podcheck.fleet)

#: A GPU check is one whose marker says gpu=True, or any check that needs one, directly or through
#: another. In the image profile (a built image, validated without a GPU) GPU checks are reported
#: "not run: no GPU".
NO_GPU = "not run: no GPU (image profile)"


@dataclass(frozen=True)
class CheckSpec:
    """What the marker says about a check."""

    id: str
    repair: str | None
    profiles: tuple[str, ...]
    needs: tuple[str, ...]
    description: str
    remedy: str = ""  # what to do by hand, for a check no repair fixes
    where: str = ""   # file::function of the check
    gpu: bool = False  # it needs a GPU itself (checks that need it do too: gpu_checks)
    when: tuple[str, ...] = ()  # config gates (podcheck.gates) that must be open for it to apply

    def applies_to(self, cfg: Any) -> bool:
        """Whether its gates are open under `cfg`. One that does not apply is skipped saying why, and
        pulls in no prerequisites, so a failing prerequisite is not reported for it."""
        return gates.closed(cfg, self.when) is None

    @property
    def area(self) -> str:
        return self.id.split(".", 1)[0]


def spec_of(item: pytest.Item) -> CheckSpec | None:
    """The CheckSpec of a collected check, or None for an ordinary test."""
    cached = item.stash.get(SPEC, None)
    if cached is not None:
        return cached
    mark = item.get_closest_marker("podcheck")
    if mark is None:
        return None
    kw = dict(mark.kwargs)
    check_id = kw.pop("id", None) or (mark.args[0] if mark.args else None)
    if not check_id or "." not in check_id:
        raise pytest.UsageError(f"{item.nodeid}: podcheck marker needs id='area.name'")
    profiles = tuple(kw.pop("profiles", DEFAULT_PROFILES))
    unknown = set(profiles) - set(PROFILES)
    if unknown:
        raise pytest.UsageError(f"{item.nodeid}: unknown profile(s) {sorted(unknown)}")
    doc = (getattr(item, "function", None).__doc__ or "").strip().splitlines()
    function = getattr(item, "function", None)
    where = f"{item.path.name}::{function.__name__}" if function is not None else item.nodeid
    try:
        when = gates.names(kw.pop("when", ()))
    except ValueError as exc:
        raise pytest.UsageError(f"{item.nodeid}: {exc}") from None
    spec = CheckSpec(check_id, kw.pop("repair", None), profiles, tuple(kw.pop("needs", ())), doc[0] if doc else "",
                     remedy=kw.pop("remedy", ""), where=where, gpu=bool(kw.pop("gpu", False)), when=when)
    if kw:
        raise pytest.UsageError(f"{item.nodeid}: unknown podcheck marker argument(s) {sorted(kw)}")
    item.stash[SPEC] = spec
    return spec


def matches(check_id: str, selectors: Iterable[str]) -> bool:
    """`memory` selects memory.*, `memory.ram` that check, `*.running` by glob."""
    area = check_id.split(".", 1)[0]
    return any(s == check_id or s == area or fnmatch.fnmatchcase(check_id, s) for s in selectors)


# --- options and configuration --------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("podcheck", "podcheck pod health checks")
    group.addoption("--pod-config", default=None, help="podcheck.toml to use (default: discovery)")
    group.addoption("--pod-profile", default="runtime", choices=PROFILES, help="which checks apply (default runtime)")
    group.addoption("--pod-select", action="append", default=[], help="check id, area or glob (repeatable)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "podcheck(id, repair=None, remedy='', profiles=(...), needs=(), gpu=False, "
                                       "when=()): a podcheck health check")
    config.stash[RESULTS] = []
    config.stash[OUTCOMES] = {}
    config.stash[PODS] = {}
    config.stash[GATHERINGS] = {}


def _config(config: pytest.Config) -> config_mod.Config:
    if CONFIG not in config.stash:
        try:
            config.stash[CONFIG] = config_mod.load(config.getoption("pod_config"))
        except config_mod.ConfigError as exc:
            raise pytest.UsageError(str(exc)) from None
    return config.stash[CONFIG]


# --- selection and order --------------------------------------------------------------------------

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    specs = {item: spec_of(item) for item in items}
    if not any(specs.values()):
        return
    config.stash[RANK] = catalogue_rank([s for s in specs.values() if s])
    cfg = _config(config)
    profile = config.getoption("pod_profile")
    selectors = [s.strip() for arg in config.getoption("pod_select") for s in arg.split(",") if s.strip()]
    by_id = {s.id: s for s in specs.values() if s}
    wanted = {cid for cid in by_id if not selectors or matches(cid, selectors)}
    per_pod = config.stash.get(HOST_CONFIGS, {})  # a fleet: each pod's own config opens its own gates
    configs = [cfg, *per_pod.values()]

    def applies(spec: CheckSpec) -> bool:
        return any(spec.applies_to(c) for c in configs)

    stack = [cid for cid in wanted if applies(by_id[cid])]
    while stack:  # a selected check brings its prerequisites, so blocking still works
        for need in by_id[stack.pop()].needs:
            if need in by_id and need not in wanted:
                wanted.add(need)
                if applies(by_id[need]):
                    stack.append(need)
    no_gpu = gpu_checks(by_id.values()) if profile == "image" else set()
    kept: list[pytest.Item] = []
    dropped: list[pytest.Item] = []
    for item in items:
        spec = specs[item]
        if spec is not None and spec.id in wanted and spec.id in no_gpu:
            item.stash[NOT_RUN] = NO_GPU
        off = gates.closed(per_pod.get(_host_key(item), cfg), spec.when) if spec is not None else None
        if off:
            item.stash[NOT_RUN] = off  # the config switches it off: said once, here, for every such check
        ok = spec is None or (spec.id in wanted and (profile in spec.profiles or spec.id in no_gpu))
        (kept if ok else dropped).append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = _ordered(kept, specs)
    config.stash[NEEDS_FACTS] = any(_waits_for_facts(i) for i in items if specs[i] and NOT_RUN not in i.stash)


def catalogue_rank(specs: Iterable[CheckSpec]) -> dict[str, tuple[int, int]]:
    """Each check's place in the catalogue (AREAS order, then file order), for listing and reporting."""
    return {s.id: (AREAS.index(s.area) if s.area in AREAS else len(AREAS), i) for i, s in enumerate(specs)}


def gpu_checks(specs: Iterable[CheckSpec]) -> set[str]:
    """The ids of the gpu=True checks and of every check that needs one, directly or through another."""
    specs = list(specs)
    found = {s.id for s in specs if s.gpu}
    grew = True
    while grew:
        more = {s.id for s in specs if s.id not in found and found.intersection(s.needs)}
        found |= more
        grew = bool(more)
    return found


def _ordered(items: list[pytest.Item], specs: dict) -> list[pytest.Item]:
    """Prerequisites first; checks that wait for the facts probe, themselves or through a prerequisite,
    last, so the probe overlaps the rest."""
    by_key: dict[tuple, list[pytest.Item]] = {}
    for item in items:
        if specs[item]:
            by_key.setdefault((_host_key(item), specs[item].id), []).append(item)
    waiting: dict[int, bool] = {}

    def waits(item: pytest.Item, trail: tuple = ()) -> bool:
        if id(item) not in waiting:
            spec = specs[item]
            deps = [d for need in (spec.needs if spec else ()) for d in by_key.get((_host_key(item), need), [])
                    if id(d) not in trail]
            waiting[id(item)] = _waits_for_facts(item) or any(waits(d, trail + (id(item),)) for d in deps)
        return waiting[id(item)]

    preferred = sorted(items, key=waits)
    out: list[pytest.Item] = []
    placed: set[int] = set()

    def place(item: pytest.Item, trail: tuple = ()) -> None:
        if id(item) in placed or id(item) in trail:
            return
        spec = specs[item]
        for need in spec.needs if spec else ():
            for dep in by_key.get((_host_key(item), need), []):
                place(dep, trail + (id(item),))
        placed.add(id(item))
        out.append(item)

    for item in preferred:
        place(item)
    return out


def _waits_for_facts(item: pytest.Item) -> bool:
    return bool({"facts", "gpus"} & set(getattr(item, "fixturenames", ())))


def _host_key(item: pytest.Item) -> str:
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("_testinfra_host") if callspec else None
    return host.backend.get_pytest_id() if host is not None else "local"


# --- blocking and results -------------------------------------------------------------------------

@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    spec = spec_of(item)
    if spec is None:
        return
    if NOT_RUN in item.stash:
        pytest.skip(item.stash[NOT_RUN])
    outcomes = item.config.stash[OUTCOMES]
    for need in spec.needs:
        status, root = outcomes.get((_host_key(item), need), (None, None))
        if status in ("failed", "error", "blocked"):
            item.stash[PHASES] = {"blocked_by": root}
            pytest.skip(f"blocked by {root}")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report = outcome.get_result()
    spec = spec_of(item)
    if spec is None:
        return
    state = item.stash.setdefault(PHASES, {})
    if report.when == "setup" and report.passed:
        state["setup_s"] = report.duration
        return
    if report.when == "teardown" or state.get("done"):
        return  # teardown of our fixtures cannot change a verdict already given
    state["done"] = True
    status, message = _verdict(report, call)
    blocked_by = state.get("blocked_by")
    result = CheckResult(
        id=spec.id, area=spec.area, status=status, message=message, repair=spec.repair,
        blocked_by=blocked_by, duration_s=report.duration + state.get("setup_s", 0.0),
        description=spec.description, remedy=spec.remedy,
    )
    item.config.stash[RESULTS].append(result)
    # travels with the report from an xdist worker to the controller (podcheck.fleet.run)
    report.podcheck_result = {**result.as_dict(), "description": result.description, "host": _host_key(item),
                              "rank": list(item.config.stash.get(RANK, {}).get(spec.id, (len(AREAS), 0)))}
    item.config.stash[OUTCOMES][(_host_key(item), spec.id)] = (
        "blocked" if blocked_by else status, blocked_by or spec.id)


def _verdict(report: pytest.TestReport, call: pytest.CallInfo) -> tuple[str, str]:
    if report.passed:
        return "passed", _passed_message(report)
    if report.skipped:
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return "skipped", reason.removeprefix("Skipped: ")
    exc = call.excinfo.value if call.excinfo else None
    if report.when == "call" and isinstance(exc, (AssertionError, pytest.fail.Exception)):
        text = exc.msg if isinstance(exc, pytest.fail.Exception) else str(exc)
        return "failed", text.split("\nassert ", 1)[0].strip() or "check failed"
    return "error", _exception_text(call)


def _passed_message(report: pytest.TestReport) -> str:
    """A passing check may say what it saw: `record_property("message", ...)` or podcheck.say()."""
    for name, value in report.user_properties:
        if name == "message":
            return str(value)
    return ""


def _exception_text(call: pytest.CallInfo) -> str:
    if not call.excinfo:
        return "error"
    exc = call.excinfo.value
    entry = call.excinfo.traceback[-1] if call.excinfo.traceback else None
    where = f" (at {Path(entry.path).name}:{entry.lineno + 1})" if entry is not None else ""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"check could not run: {type(exc).__name__}: {text[:300]}{where}"


# --- fixtures ---------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def cfg(pytestconfig: pytest.Config) -> config_mod.Config:
    """The podcheck config of this run."""
    return _config(pytestconfig)


@pytest.fixture(scope="module")
def pod(host: Any, cfg: config_mod.Config, pytestconfig: pytest.Config) -> Pod:
    """The pod behind testinfra's `host`: config and commands with timeouts; facts start gathering."""
    pods = pytestconfig.stash[PODS]
    key = host.backend.get_pytest_id()
    if key not in pods:
        pods[key] = Pod(pytestconfig.stash.get(HOST_CONFIGS, {}).get(key, cfg), host)
        gathering = pytestconfig.stash[GATHERINGS][key] = Gathering(pods[key], pytestconfig.stash.get(PROBE_CACHE, None))
        if pytestconfig.stash.get(NEEDS_FACTS, False):
            gathering.start()
    return pods[key]


@pytest.fixture
def facts(pod: Pod, pytestconfig: pytest.Config) -> Facts:
    """The pod's Facts (probe + NVML), gathered once per host and run."""
    return pytestconfig.stash[GATHERINGS][pod.host.backend.get_pytest_id()].get()


@pytest.fixture
def gpus(pod: Pod, pytestconfig: pytest.Config) -> list:
    """The GPUs NVML sees; skips the check when GPU checks do not apply to this pod.

    `[pod] gpu = "absent"` skips without waiting for the facts; `"optional"` skips when NVML sees
    no GPU; `"required"` always returns (maybe an empty list: gpu.driver fails on that).
    """
    if pod.config.pod.gpu == "absent":
        pytest.skip(gpu.skip_reason("absent", {}))
    found = pytestconfig.stash[GATHERINGS][pod.host.backend.get_pytest_id()].get()
    reason = gpu.skip_reason(pod.config.pod.gpu, found.nvml)
    if reason:
        pytest.skip(reason)
    return found.gpus


@pytest.fixture
def say(record_property):
    """Give a passing check's message: `say("ffmpeg 5.1.9")`."""
    return lambda message: record_property("message", message)
