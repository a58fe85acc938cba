"""Repairs of the training area: training.resume (the work is in podcheck.domain.resume)."""
from __future__ import annotations

from podcheck.domain import resume
from podcheck.fix.repair import Context, Outcome, Repair, register


@register
class TrainingResume(Repair):
    id = "training.resume"
    description = "stop a stuck LoRA training and relaunch it from its newest state checkpoint (--resume)"
    blast = "restarts-service"

    def commands(self, ctx: Context) -> list[list[str]]:
        out = []
        for pid, _ in resume.stuck(ctx.pod):
            procs = resume.processes(ctx.pod)
            run = resume.find_run(ctx.pod, pid, procs)
            if run is not None:
                members = [str(p.pid) for p in resume.descendants(procs, run.pid)]
                out += [["kill", "-s", "TERM", "--", *members], ["setsid", "bash", run.script]]
        return out

    def apply(self, ctx: Context) -> Outcome:
        status, message = resume.repair(ctx.pod)
        return Outcome(status, message)
