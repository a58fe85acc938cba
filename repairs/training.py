"""Repairs of the training area: training.resume (the work is in podcheck.domain.resume)."""
from __future__ import annotations

from podcheck.domain import resume
from podcheck.fix.repair import Context, Outcome, Repair, register


@register
class TrainingResume(Repair):
    id = "training.resume"
    order = 140
    description = "stop a stuck LoRA training and relaunch it from its newest state checkpoint (--resume)"
    blast = "restarts-service"

    def apply(self, ctx: Context) -> Outcome:
        status, message = resume.repair(ctx.pod, act=ctx)
        return Outcome(status, message)
