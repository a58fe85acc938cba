"""Config gates: the parts of podcheck a config can switch off, by name. A check names its gates on
its marker (`@pytest.mark.podcheck(..., when="comfyui.enabled")`), a repair in its class
(`when = ("sync.enabled",)`); the plugin and the fix engine skip what a closed gate switches off, with
the gate's reason, and `podcheck list` shows which checks the current config leaves out.

>>> from types import SimpleNamespace as NS
>>> cfg = NS(comfyui=NS(enabled=True), sync=NS(enabled=False), attention=NS(sage="required"))
>>> closed(cfg, ("comfyui.enabled", "attention.sage")) is None
True
>>> closed(cfg, ("sync.enabled",))
'sync is off ([sync] enabled = false)'
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

#: gate name -> (open under this config?, why it is closed)
GATES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "comfyui.enabled": (lambda c: bool(c.comfyui.enabled),
                        "ComfyUI is not used on this pod ([comfyui] enabled = false)"),
    "sync.enabled": (lambda c: bool(c.sync.enabled), "sync is off ([sync] enabled = false)"),
    "attention.sage": (lambda c: c.attention.sage != "off", 'sage is off ([attention] sage = "off")'),
}


def names(value: str | Iterable[str] | None) -> tuple[str, ...]:
    """A `when` as a tuple of known gate names; ValueError for an unknown one."""
    found = (value,) if isinstance(value, str) else tuple(value or ())
    unknown = [n for n in found if n not in GATES]
    if unknown:
        raise ValueError(f"unknown gate(s) {', '.join(unknown)} (known: {', '.join(GATES)})")
    return found


def closed(cfg: Any, when: Iterable[str]) -> str | None:
    """Why the first closed gate of `when` switches it off under `cfg`, or None when all are open."""
    for name in when:
        is_open, why = GATES[name]
        if not is_open(cfg):
            return why
    return None
