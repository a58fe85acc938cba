"""`podcheck --fix`: check -> plan -> (lock) -> repair -> re-check the failed checks -> report before/after.

A healthy pod pays one check run plus a few file reads: no lock, no write, no installer. When
something is due, one fixer per volume takes the lock (podcheck.fix.lock), runs the plan in order,
records markers, and re-runs the checks that failed (and those of the repairs that changed
something); failures that only now show up get one more round with the repairs not yet tried.
With `background`, slow repairs run detached after the fast ones (podcheck.fix.worker).
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable, TextIO

from podcheck import runner
from podcheck.config import Config
from podcheck.fix import markers as markers_mod
from podcheck.fix import planner, worker
from podcheck.fix.dryrun import rehearse, show_plan
from podcheck.fix.lock import LockBusy, LockError, VolumeLock, describe
from podcheck.fix.progress import BACKGROUND, FOREGROUND, Progress, redact
from podcheck.fix.registry import registry
from podcheck.fix.repair import Context, Repair, attempt
from podcheck.host.pod import Pod
from podcheck.host.state import READ_ONLY_ENV, State
from podcheck.results import CheckResult, RepairResult, Report

ROUNDS = 3


@dataclass
class Options:
    profile: str = "runtime"
    select: list[str] = field(default_factory=list)
    dry_run: bool = False
    safe_only: bool = False
    background: bool = False
    worker: bool = False  # this process IS the background run: run deferred repairs inline
    force: tuple[str, ...] = ()
    given: list[CheckResult] | None = None  # check results to start from instead of a check run


def connect(config: Config, target: runner.Target) -> Pod:
    """The pod of a target, for repairs (the checks build their own inside pytest)."""
    return Pod(config, target.host())


def fix(config: Config, target: runner.Target, opts: Options, out: TextIO = sys.stderr) -> Report:
    """Run the fix loop against one target and return the after-report (with `before` and `repairs`).
    A dry run changes nothing: its check run and everything it calls run read-only (no state write)."""
    if opts.dry_run and not os.environ.get(READ_ONLY_ENV):
        os.environ[READ_ONLY_ENV] = "1"
        try:
            return fix(config, target, opts, out)
        finally:
            os.environ.pop(READ_ONLY_ENV, None)
    started = time.time()
    say = _printer(out)
    if opts.given is not None:  # the background run starts from the foreground's last results
        before = Report(host="local" if target.is_local else target.spec, profile=opts.profile, results=opts.given)
    else:
        before = runner.run(config, target, profile=opts.profile, select=opts.select)
    pod = connect(config, target)
    repairs = registry()
    book = markers_mod.Markers(pod)
    recorded = book.load()
    hints = [] if recorded else _legacy(pod, list(repairs))
    ctx = Context(pod=pod, before={r.id: r for r in before.results})
    plan = _plan(repairs, before.results, {**{m.id: m for m in hints}, **recorded}, ctx, opts)
    report = Report(host=before.host, profile=opts.profile, started=started, results=before.results,
                    before=list(before.results))

    blockers = _blockers(plan, ctx)
    for rid, why in blockers.items():
        say(f"{rid} will fail: {why}")
    if opts.dry_run:
        report.repairs = rehearse(plan, ctx, {**{m.id: m for m in hints}, **recorded})
        for result in report.repairs:
            if result.id in blockers:
                result.message += f"; it will fail: {blockers[result.id]}"
        show_plan(plan, report.repairs, say)
        report.repairs += _idle(plan)
        report.duration_s = time.time() - started
        return report
    if not plan:
        report.repairs = _skipped(plan) + _idle(plan)
        report.duration_s = time.time() - started
        return report

    lock = VolumeLock(pod, what="podcheck --fix" + (" (background)" if opts.worker else ""))
    try:
        with lock.held(float(config.fix.lock_wait_seconds),
                       on_wait=lambda h: say(f"waiting: {describe(h)} is fixing this volume")):
            if lock.took_over:
                say(f"took over the fix lock: {lock.took_over}")
            if hints:
                book.migrate_legacy(list(repairs))
            if lock.waited:  # the other fixer may have repaired it all: look again
                before = runner.run(config, target, profile=opts.profile, select=opts.select)
                ctx.before = {r.id: r for r in before.results}
                report.results, report.before = before.results, list(before.results)
                plan = _plan(repairs, before.results, book.load(), ctx, opts)
            report.repairs, report.results, deferred = _rounds(config, target, pod, repairs, book, plan, ctx, lock,
                                                               opts, say)
    except (LockBusy, LockError) as busy:
        why = str(busy) if isinstance(busy, LockBusy) else f"cannot take the fix lock: {busy}"
        say(why)
        report.repairs = [RepairResult(s.id, "skipped", f"not run: {why}") for s in plan.steps]
        deferred = []
    if deferred:  # after the lock is released, with what the checks said last
        worker.spawn(config, target, opts, deferred, pod, say, report.results)
    report.duration_s = time.time() - started
    _remember(pod, report, opts, say)
    return report


def _rounds(config, target, pod, repairs, book, plan, ctx, lock, opts, say):
    """Run the plan, re-check, and plan again for failures whose repairs were not tried yet."""
    results = list(ctx.before.values())
    done: dict[str, RepairResult] = {}
    progress = Progress(pod, BACKGROUND if opts.worker else FOREGROUND, lock.token, list(opts.force))
    ctx.token, ctx.log, ctx.progress = lock.token, progress.log, progress.watcher(say)
    spawned = False
    deferred: list[str] = []
    for round_no in range(ROUNDS):
        steps = [s for s in plan.steps if s.id not in done]
        if not any(not s.skip for s in steps):
            break
        if round_no:
            say(f"round {round_no + 1}: {', '.join(s.id for s in steps)}")
        here = [s for s in steps if opts.worker or not s.background]
        later = [s for s in steps if s.background and not opts.worker]
        pending = {s.id for s in steps if s.background}
        tried = {rid for rid, r in done.items() if r.status in ("failed", "skipped")}
        for result in run_steps(here, repairs, book, ctx, pending, progress, lock, say, config, tried):
            done[result.id] = result
        if later:
            deferred = [s.id for s in later]
            for s in later:
                done[s.id] = RepairResult(s.id, "skipped", "running in the background (see `podcheck status`)")
            spawned = True
        changed = {rid for rid, r in done.items() if r.status == "changed"}
        recheck = [r.id for r in results if r.status in planner.BAD or r.blocked_by or r.repair in changed]
        if recheck:
            fresh = {r.id: r for r in runner.run(config, target, profile=opts.profile, select=recheck).results}
            results = [fresh.pop(r.id, r) for r in results] + list(fresh.values())
        if spawned or not any(r.status in planner.BAD for r in results):
            break
        ctx.before = {r.id: r for r in results}
        plan = _plan(repairs, results, book.load(), ctx, opts)
    progress.finish()
    return list(done.values()) + _idle(plan, exclude=set(done)), results, deferred


def run_steps(steps: list[planner.Step], repairs: dict[str, Repair], book: markers_mod.Markers, ctx: Context,
              pending: set[str], progress: "Progress", lock: VolumeLock | None, say: Callable[[str], None],
              config: Config, failed: set[str] | None = None) -> list[RepairResult]:
    """Run planned steps in order under the lock; record markers for the ones that succeeded.
    `failed`: repairs that did not succeed earlier in this fix (what needs them does not run)."""
    results: list[RepairResult] = []
    failed = set(failed or ())
    total = len(steps)
    recorded = book.load()
    for i, step in enumerate(steps, 1):
        repair = step.repair
        pending.discard(step.id)
        blocked = [n for n in repair.needed(config) if n in failed and n not in repair.may_precede]
        if step.skip or blocked or (lock is not None and lock.lost):
            why = step.skip or (f"needs {', '.join(blocked)}, which did not succeed" if blocked
                                else "the fix lock was taken over by another fixer")
            results.append(RepairResult(step.id, "skipped", why))
            failed.add(step.id)
            progress.step(step.id, "skipped", why)
            continue
        say(f"[{i}/{total}] {step.id} ({repair.blast}{', slow' if repair.slow else ''}): {step.reason}")
        progress.step(step.id, "running", step.reason)
        ctx.commands = []
        ctx.pending = frozenset(pending)
        ctx.marker = recorded.get(step.id)
        began = time.monotonic()
        outcome = attempt(repair, ctx)
        seconds = time.monotonic() - began
        say(f"      {outcome.status}: {outcome.message}")
        results.append(RepairResult(step.id, outcome.status, outcome.message, list(ctx.commands), seconds))
        progress.step(step.id, outcome.status, outcome.message)
        if outcome.status in ("changed", "unchanged"):
            try:
                book.record(step.id, repair.inputs(ctx), changed=outcome.status == "changed")
            except OSError as exc:
                say(f"      could not record the marker of {step.id}: {exc}")
        else:
            failed.add(step.id)
    return results


def run_one(config: Config, repair_id: str, target: runner.Target | None = None,
            before: list[CheckResult] | None = None, out: TextIO | None = None, dry_run: bool = False) -> RepairResult:
    """Run one repair now (its needs are not added), under the fix lock, and record its marker.
    For `podcheck watch` and tests; `before` are check results it may consult (ctx.failing).
    `dry_run`: only rehearse it (no lock, no marker): the result lists the commands it would run."""
    repairs = registry()
    if repair_id not in repairs:
        return RepairResult(repair_id, "failed", f"no repair {repair_id!r} (known: {', '.join(repairs)})")
    pod = connect(config, target or runner.Target())
    say = _printer(out) if out is not None else (lambda line: None)
    ctx = Context(pod=pod, before={r.id: r for r in before or []})
    if dry_run:
        plan = planner.Plan(steps=[planner.Step(repairs[repair_id], "asked for")])
        return rehearse(plan, ctx, markers_mod.Markers(pod).load())[0]
    lock = VolumeLock(pod, what=f"podcheck repair {repair_id}")
    try:
        with lock.held(float(config.fix.lock_wait_seconds), on_wait=lambda h: say(f"waiting: {describe(h)}")):
            progress = Progress(pod, FOREGROUND, lock.token)
            ctx.token, ctx.log, ctx.progress = lock.token, progress.log, progress.watcher(say)
            step = planner.Step(repairs[repair_id], "asked for")
            result = run_steps([step], repairs, markers_mod.Markers(pod), ctx, set(), progress, lock, say, config)[0]
            progress.finish()
            return result
    except LockBusy as busy:
        return RepairResult(repair_id, "skipped", f"not run: {busy}")
    except LockError as exc:
        return RepairResult(repair_id, "failed", f"cannot take the fix lock: {exc}")


def _plan(repairs, results, recorded, ctx, opts) -> planner.Plan:
    judged = {r.repair for r in results if r.status != "skipped"} | set(opts.force)
    inputs: dict[str, Any] = {}
    for rid, repair in repairs.items():
        if rid not in judged:
            inputs[rid] = None  # no check of it applies here: its inputs cannot make it due (and cost a read)
            continue
        try:
            inputs[rid] = repair.inputs(ctx)
        except Exception:  # unreadable inputs: the repair has nothing to compare, its checks still judge
            inputs[rid] = None
    return planner.make(repairs, results, recorded, inputs, ctx.cfg, safe_only=opts.safe_only,
                        background=opts.background or opts.worker, force=opts.force)


def _legacy(pod: Pod, known: list[str]) -> list[markers_mod.Marker]:
    first: dict[str, markers_mod.Marker] = {}
    for rid, src, when in markers_mod.legacy_hints(pod, known):
        first.setdefault(rid, markers_mod.Marker(id=rid, fingerprint=None, changed_at=when, source=f"legacy: {src}"))
    return list(first.values())


def _blockers(plan: planner.Plan, ctx: Context) -> dict[str, str]:
    """The planned repairs known to fail from the config alone (said before anything slow runs)."""
    out = {}
    for step in plan.steps:
        if step.skip:
            continue
        try:
            why = step.repair.blocker(ctx)
        except Exception as exc:  # a blocker is advice: never let it stop the fix
            why = None
            ctx.log(f"{step.id}: cannot tell whether it can run: {type(exc).__name__}: {exc}")
        if why:
            out[step.id] = why
    return out


def _idle(plan: planner.Plan, exclude: frozenset[str] | set[str] = frozenset()) -> list[RepairResult]:
    return [RepairResult(rid, "unchanged", f"nothing to do: {why}") for rid, why in plan.idle.items()
            if rid not in exclude]


def _skipped(plan: planner.Plan) -> list[RepairResult]:
    return [RepairResult(s.id, "skipped", s.skip or "") for s in plan.steps]


def _printer(out: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        out.write(f"podcheck --fix: {redact(line)}\n")
        out.flush()
    return say


def _remember(pod: Pod, report: Report, opts: Options, say: Any = None) -> None:
    """Keep the last fix's report in state_dir for `podcheck status` (never fatal: a refusal is said)."""
    try:
        State(pod).write("last-fix", {**report.as_dict(), "worker": opts.worker}, redact=True)
    except OSError as exc:
        if say is not None:
            say(f"cannot keep this fix's report: {exc}")


def reset(pod: Pod, ids: list[str]) -> list[str]:
    """Forget markers (all when `ids` is empty) under the fix lock; ValueError for an unknown id."""
    known = registry()
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise ValueError(f"unknown repair id {', '.join(unknown)} (known: {', '.join(known)})")
    try:
        with VolumeLock(pod, what="podcheck reset").held(wait=30.0):
            return markers_mod.Markers(pod).forget(ids or None)
    except LockBusy as busy:
        raise ValueError(str(busy)) from None
