"""Repairs of the gpu area: the pod venv and a torch build that can drive the GPU."""
from __future__ import annotations

from typing import Any

from podcheck import facts
from podcheck.domain import gpu
from podcheck.fix.pip import PipRepair, venv_dir
from podcheck.fix.repair import Context, Outcome, Repair, register


@register
class Venv(Repair):
    id = "venv"
    order = 20
    description = "create the pod venv ([pod] python) when it is missing or broken"
    blast = "safe"

    def inputs(self, ctx: Context) -> dict[str, Any]:
        return {"python": ctx.cfg.pod.python}

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
        if ctx.dry_run:
            return Outcome.changed(f"would {'repair' if existed else 'create'} the venv {folder}")
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
    order = 30
    dist = "torch"
    description = ("pip install the torch set ([torch] spec, vision_spec, audio_spec) in one command from one "
                   "index ([torch] index_url, by default PyTorch's index for [torch] cuda) into the pod python")
    needs = ("venv",)
    slow = True
    blast = "replaces-packages"

    def spec(self, ctx: Context) -> str:
        return ctx.cfg.torch.spec

    def specs(self, ctx: Context) -> list[str]:
        t = ctx.cfg.torch
        return [t.spec] + [s for s in (t.vision_spec, t.audio_spec) if s]

    def index(self, ctx: Context) -> str:
        return gpu.torch_index(ctx.cfg.torch.cuda, ctx.cfg.torch.index_url)

    def inputs(self, ctx: Context) -> dict[str, Any]:
        return {"spec": " ".join(self.specs(ctx)), "index_url": self.index(ctx)}

    def verify(self, ctx: Context) -> str | None:
        """The set must import together and be built for one another (the gpu.torch_set judgement)."""
        problems = torch_set_problems(ctx)
        if not problems:
            return None
        where = self.index(ctx) or "pip's own index"
        return (f"installed {' '.join(self.specs(ctx))} from {where}, but the torch set does not work together: "
                f"{'; '.join(problems)}")


def torch_set_problems(ctx: Context) -> list[str]:
    """What is wrong with the pod python's torch, torchvision and torchaudio together (gpu.torch_set)."""
    found = facts.run_probe(ctx.pod, {"gpu": False, "sage": False, "requirements": None, "torchset": True})
    if found.torch.get("error"):
        return [f"import torch fails: {found.torch['error'][:300]}"]
    return gpu.torch_set_problems(found.torch, found.torchset, ctx.cfg)
