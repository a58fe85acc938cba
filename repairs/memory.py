"""Repairs of the memory area: ask each idle ComfyUI to unload its models and free memory (POST /free).
A busy ComfyUI is left alone: /free would apply after its current job anyway, and nothing is interrupted."""
from __future__ import annotations

from podcheck.repairs.comfyui import idle

from podcheck.domain import comfyui
from podcheck.fix.repair import Context, Outcome, Repair, register

FREE = {"unload_models": True, "free_memory": True}


@register
class FreeMemory(Repair):
    id = "memory.free"
    description = "POST /free (unload_models, free_memory) to each idle ComfyUI"
    blast = "safe"

    def commands(self, ctx: Context) -> list[list[str]]:
        return [["POST", proc.url("/free"), '{"unload_models": true, "free_memory": true}']
                for proc in comfyui.processes(ctx.pod)]

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
            ctx.commands.append(f"POST {proc.url('/free')} {FREE}")
            answer = comfyui.request(ctx.pod, proc.url("/free"), "POST", FREE)
            if answer.ok:
                freed.append(str(proc))
            else:
                left.append(f"{proc}: POST /free failed ({answer.error or f'HTTP {answer.status}'})")
        if not freed:
            return Outcome.skipped("; ".join(left))
        return Outcome.changed(f"asked {', '.join(freed)} to unload models and free memory"
                               + (f"; not {'; '.join(left)}" if left else ""))
