"""`podcheck --fix --dry-run`: check mode on the same code path as the fix (as ansible's). Each planned
repair's own `apply` runs with a Context whose `dry_run` is set: its changes (`ctx.run`, `ctx.do`, the
actor it hands to domain helpers) are recorded and not made, its reads (`ctx.probe`) run. The plan's
commands are that record, so they are the commands `apply` runs on the same pod."""
from __future__ import annotations

from dataclasses import replace
from typing import Any, Callable

from podcheck.fix import planner
from podcheck.fix.repair import Context, attempt
from podcheck.results import RepairResult


def rehearse(plan: planner.Plan, ctx: Context, recorded: dict[str, Any]) -> list[RepairResult]:
    """`--dry-run`: each planned repair's own `apply` in check mode (a Context with `dry_run`: its
    changes are recorded, not made; its reads run), so the plan's commands are the ones `apply` runs."""
    pending = {s.id for s in plan.steps if s.background}
    out = []
    for step in plan.steps:
        pending.discard(step.id)
        if step.skip:
            out.append(RepairResult(step.id, "skipped", f"dry run: {step.skip}"))
            continue
        dry = replace(ctx, commands=[], dry_run=True, pending=frozenset(pending), marker=recorded.get(step.id),
                      log=lambda text: None)
        outcome = attempt(step.repair, dry)  # a crash is a failed outcome: the rest of the plan still shows
        if outcome.status in ("unchanged", "skipped"):
            message = f"dry run: nothing to do: {outcome.message}"
        elif outcome.status == "failed" and not dry.commands:
            message = f"dry run: would fail: {outcome.message}"
        else:
            message = f"dry run: would run: {step.reason}"
        out.append(RepairResult(step.id, "skipped", message, commands=list(dry.commands)))
    return out


def show_plan(plan: planner.Plan, rehearsed: list[RepairResult], say: Callable[[str], None]) -> None:
    runnable = [s for s in plan.steps if not s.skip]
    if not plan.steps:
        say("dry run: nothing to repair")
        return
    say(f"dry run: {len(runnable)} repair(s) would run, in this order (nothing is changed):")
    found = {r.id: r for r in rehearsed}
    for i, step in enumerate(plan.steps, 1):
        r = step.repair
        flags = r.blast + (", slow" if r.slow else "") + (", background" if step.background else "")
        say(f"  {i}. {step.id} [{flags}] {step.skip or step.reason}: {r.description}")
        result = found.get(step.id)
        if result is not None and result.message.startswith(("dry run: nothing to do", "dry run: would fail")):
            say(f"       {result.message.removeprefix('dry run: ')}")
        for command in result.commands if result is not None else []:
            say(f"       $ {command}")
