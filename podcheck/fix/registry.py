"""The repair registry: every module of podcheck.repairs imported once, its repairs in plan order
(each class's `order`, then its id)."""
from __future__ import annotations

import importlib
import pkgutil

import podcheck.repairs as package
from podcheck.fix.repair import REGISTERED, Repair


def registry() -> dict[str, Repair]:
    """Every repair, by id, in plan order."""
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    ids = sorted(REGISTERED, key=lambda rid: (REGISTERED[rid].order, rid))
    return {rid: REGISTERED[rid]() for rid in ids}
