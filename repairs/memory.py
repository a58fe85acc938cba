"""Repairs of the memory area: ask each idle ComfyUI to unload its models and free memory (POST /free).
A busy ComfyUI is left alone: /free would apply after its current job anyway, and nothing is interrupted."""
from __future__ import annotations

import json
from functools import partial
from types import SimpleNamespace

from podcheck.domain import comfyui
from podcheck.fix.repair import Context, Outcome, Repair, register
from podcheck.repairs.comfyui_launch import idle

FREE = {"unload_models": True, "free_memory": True}
PLANNED = SimpleNamespace(ok=True, status=200, error=None, data=None)  # a dry run's answer: not sent


@register
class FreeMemory(Repair):
    id = "memory.free"
    order = 130
    description = "POST /free (unload_models, free_memory) to each idle ComfyUI"
    blast = "safe"

    def apply(self, ctx: Context) -> Outcome:
        procs = comfyui.processes(ctx.pod)
        if not procs:
            return Outcome.unchanged("no ComfyUI runs: nothing holds models to unload")
        freed, left = [], []
        for proc in procs:
            busy = idle(ctx, proc)
            if busy:
                left.append(busy)
                continue
            url = proc.url("/free")
            answer = ctx.do(f"POST {url} {json.dumps(FREE)}", partial(comfyui.request, ctx.pod, url, "POST", FREE),
                            PLANNED)
            if answer.ok:
                freed.append(str(proc))
            else:
                left.append(f"{proc}: POST /free failed ({answer.error or f'HTTP {answer.status}'})")
        if not freed:
            return Outcome.skipped("; ".join(left))
        return Outcome.changed(f"asked {', '.join(freed)} to unload models and free memory"
                               + (f"; not {'; '.join(left)}" if left else ""))
