"""The fix plan: which repairs are due after a check run, with what they need first, in order.

A repair is due when
  * a check it fixes failed (or could not run), or was blocked by a check whose repair is due;
  * its inputs differ from the fingerprint its marker recorded (no marker yet: nothing recorded),
    provided one of its checks applies to this pod (ran and was not skipped).
What a due repair needs comes first; a need whose checks passed and whose inputs did not change is
left alone (editing requirements.txt re-runs `comfyui`, not `torch`); a need that no check judged
(`venv`) is run, which is cheap because every repair is idempotent.
With `background`, slow repairs and the repairs that need them are left to a detached run; a repair
that `may_precede` a slow need runs first and adapts (ComfyUI starts, then sage is installed).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from podcheck.fix.markers import Marker, fingerprint
from podcheck.fix.repair import Repair
from podcheck.results import CheckResult

BAD = ("failed", "error")


@dataclass
class Step:
    repair: Repair
    reason: str  # why it runs
    due: bool = True  # False: only because a due repair needs it
    skip: str | None = None  # why it will not run (--safe-only)
    background: bool = False

    @property
    def id(self) -> str:
        return self.repair.id


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)  # in the order they run (background ones last)
    idle: dict[str, str] = field(default_factory=dict)  # repairs in scope with nothing to do -> why
    inputs: dict[str, dict[str, Any] | None] = field(default_factory=dict)

    @property
    def foreground(self) -> list[Step]:
        return [s for s in self.steps if not s.background]

    @property
    def background(self) -> list[Step]:
        return [s for s in self.steps if s.background]

    def __bool__(self) -> bool:
        return any(not s.skip for s in self.steps)


def make(repairs: dict[str, Repair], results: list[CheckResult], markers: dict[str, Marker],
         inputs: dict[str, dict[str, Any] | None], cfg: Any, *, safe_only: bool = False,
         background: bool = False, force: tuple[str, ...] = ()) -> Plan:
    """Plan the repairs for these results. `inputs` holds each repair's current inputs (None: none);
    `force` names repairs that are due whatever the checks say (the background run's queue)."""
    by_id = {r.id: r for r in results}
    checks: dict[str, list[CheckResult]] = {}
    for r in results:
        if r.repair:
            checks.setdefault(r.repair, []).append(r)

    reasons: dict[str, str] = {}
    for rid in repairs:
        bad = [c for c in checks.get(rid, []) if c.status in BAD]
        if bad:
            reasons[rid] = "; ".join(f"{c.id} {c.status}" for c in bad)
    for rid in repairs:  # blocked by a check that a due repair fixes
        if rid in reasons:
            continue
        for c in checks.get(rid, []):
            root = by_id.get(c.blocked_by) if c.blocked_by else None
            if root is not None and root.repair in reasons:
                reasons[rid] = f"{c.id} blocked by {root.id}"
                break
    for rid in repairs:  # inputs changed, or never recorded
        applies = any(c.status != "skipped" for c in checks.get(rid, []))
        if rid in reasons or not applies or inputs.get(rid) is None:
            continue
        marker = markers.get(rid)
        if marker is None:
            reasons[rid] = "inputs not recorded yet"
        elif marker.fingerprint is None:
            reasons[rid] = f"recorded by {marker.source}, inputs unknown"
        elif marker.fingerprint != fingerprint(inputs[rid]):
            reasons[rid] = f"inputs changed: {', '.join(marker.changes(inputs[rid]))}"
    for rid in force:
        reasons.setdefault(rid, "left to the background run")

    included: dict[str, Step] = {rid: Step(repairs[rid], why) for rid, why in reasons.items() if rid in repairs}
    stack = list(included)
    while stack:
        rid = stack.pop()
        for need in repairs[rid].needed(cfg):
            if need in included or need not in repairs:
                continue
            judged = checks.get(need, [])
            if judged and all(c.status in ("passed", "skipped") for c in judged):
                continue  # its checks pass and its inputs are unchanged: nothing to redo
            included[need] = Step(repairs[need], f"needed by {rid}", due=False)
            stack.append(need)

    deferred = _deferred(included, repairs, cfg) if background else set()
    order = _order(included, repairs, cfg, deferred)
    steps = [included[rid] for rid in order]
    for step in steps:
        step.background = step.id in deferred
    if safe_only:
        for step in steps:
            if step.repair.blast != "safe":
                step.skip = f"--safe-only: its blast radius is {step.repair.blast}"
    skipped = {s.id for s in steps if s.skip}
    for step in steps:  # a repair whose need will not run does not run either
        missing = [n for n in step.repair.needed(cfg) if n in skipped and n not in step.repair.may_precede]
        if missing and not step.skip:
            step.skip = f"needs {', '.join(missing)}, which will not run"
            skipped.add(step.id)

    idle = {}
    for rid in repairs:
        if rid in included:
            continue
        judged = [c for c in checks.get(rid, []) if c.status != "skipped"]
        if judged:
            idle[rid] = "checks pass" + (", inputs unchanged" if inputs.get(rid) is not None else "")
        elif rid in markers:
            idle[rid] = "none of its checks applies here"
    return Plan(steps=steps, idle=idle, inputs=inputs)


def _deferred(included: dict[str, Step], repairs: dict[str, Repair], cfg: Any) -> set[str]:
    """Slow repairs, and the repairs that need one (except needs they may precede)."""
    deferred = {rid for rid in included if repairs[rid].slow}
    grew = True
    while grew:
        grew = False
        for rid in included:
            if rid in deferred:
                continue
            r = repairs[rid]
            if any(n in deferred and n not in r.may_precede for n in r.needed(cfg)):
                deferred.add(rid)
                grew = True
    return deferred


def _order(included: dict[str, Step], repairs: dict[str, Repair], cfg: Any, deferred: set[str]) -> list[str]:
    """Needs first, registry order otherwise; background repairs after the foreground ones.
    A repair that may precede a deferred need runs before it."""
    edges: dict[str, set[str]] = {rid: set() for rid in included}  # rid -> what must run before it
    for rid in included:
        for need in repairs[rid].needed(cfg):
            if need not in included:
                continue
            if need in deferred and need in repairs[rid].may_precede:
                edges[need].add(rid)  # reversed: the adapting repair goes first
            else:
                edges[rid].add(need)
    rank = {rid: i for i, rid in enumerate(repairs)}
    out: list[str] = []
    done: set[str] = set()
    for phase in (False, True):
        while True:
            ready = [rid for rid in included if rid not in done and (rid in deferred) == phase
                     and edges[rid] <= done]
            if not ready:
                break
            nxt = min(ready, key=rank.__getitem__)
            out.append(nxt)
            done.add(nxt)
    out += sorted((rid for rid in included if rid not in done), key=rank.__getitem__)  # a cycle: registry order
    return out
