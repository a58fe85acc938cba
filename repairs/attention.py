"""Repairs of the attention area: SageAttention in the pod python."""
from __future__ import annotations

from typing import Any

from podcheck.fix.pip import PipRepair
from podcheck.fix.repair import Context, Outcome, register


@register
class Sage(PipRepair):
    id = "sage"
    dist = "sageattention"
    description = "pip install the configured SageAttention ([attention] sage_spec) into the pod python"
    needs = ("torch",)
    slow = True
    blast = "replaces-packages"

    def spec(self, ctx: Context) -> str:
        return ctx.cfg.attention.sage_spec

    def inputs(self, ctx: Context) -> dict[str, Any]:
        return {"spec": self.spec(ctx)}

    def apply(self, ctx: Context) -> Outcome:
        if ctx.cfg.attention.sage == "off":
            return Outcome.skipped('sage is off ([attention] sage = "off")')
        return super().apply(ctx)

    def verify(self, ctx: Context) -> str | None:
        ran = ctx.probe(ctx.cfg.pod.python, "-c", "import sageattention", timeout=120)
        if ran.ok:
            return None
        tail = (ran.stderr.strip().splitlines() or [ran.why()])[-1]
        return f"sageattention is installed, but `import sageattention` fails: {tail[:300]}"
