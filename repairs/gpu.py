"""Repairs of the gpu area: the pod venv and a torch build that can drive the GPU."""
from __future__ import annotations

from typing import Any

from podcheck.fix.pip import PipRepair, venv_dir
from podcheck.fix.repair import Context, Outcome, Repair, register


@register
class Venv(Repair):
    id = "venv"
    description = "create the pod venv ([pod] python) when it is missing or broken"
    blast = "safe"

    def inputs(self, ctx: Context) -> dict[str, Any]:
        return {"python": ctx.cfg.pod.python}

    def commands(self, ctx: Context) -> list[list[str]]:
        folder = venv_dir(ctx.cfg.pod.python)
        return [[ctx.cfg.fix.base_python, "-m", "venv", folder]] if folder else []

    def apply(self, ctx: Context) -> Outcome:
        python = ctx.cfg.pod.python
        if self._works(ctx):
            return Outcome.unchanged(f"the pod python {python} runs and has pip")
        folder = venv_dir(python)
        if folder is None:
            return Outcome.failed(f"the pod python {python} does not run, and it is not in a venv podcheck could create"
                                  " ([pod] python should end in <venv>/bin/python)")
        existed = ctx.probe("test", "-e", folder).ok
        create = [ctx.cfg.fix.base_python, "-m", "venv", folder]
        ran = ctx.run(*create, timeout=600)  # on an existing venv this only repairs it (no --clear)
        if ran.ok and self._works(ctx):
            return Outcome.changed(f"{'repaired' if existed else 'created'} the venv {folder}")
        if not existed:
            return Outcome.failed(f"cannot create the venv {folder}: {ran.why()}")
        where, why = ctx.quarantine(folder)  # broken beyond repair: keep it, start afresh
        if where is None:
            return Outcome.failed(f"the venv {folder} is broken and cannot be moved aside: {why}")
        ran = ctx.run(*create, timeout=600)
        if ran.ok and self._works(ctx):
            return Outcome.changed(f"the venv {folder} was broken: moved it to {where} and created a new one")
        return Outcome.failed(f"cannot create the venv {folder}: {ran.why()}")

    @staticmethod
    def _works(ctx: Context) -> bool:
        return ctx.probe(ctx.cfg.pod.python, "-m", "pip", "--version", timeout=60).ok


@register
class Torch(PipRepair):
    id = "torch"
    dist = "torch"
    description = "pip install the configured torch build ([torch] spec from [torch] index_url) into the pod python"
    needs = ("venv",)
    slow = True
    blast = "replaces-packages"

    def spec(self, ctx: Context) -> str:
        return ctx.cfg.torch.spec

    def index(self, ctx: Context) -> str:
        return ctx.cfg.torch.index_url
