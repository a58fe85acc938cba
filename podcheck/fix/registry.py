"""The repair registry: every module of podcheck.repairs imported once, its repairs in plan order."""
from __future__ import annotations

import importlib
import pkgutil

import podcheck.repairs as package
from podcheck.fix.repair import ORDER, REGISTERED, Repair


def registry() -> dict[str, Repair]:
    """Every repair, by id: ORDER first, then the rest by id."""
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{module.name}")
    rank = {rid: i for i, rid in enumerate(ORDER)}
    ids = sorted(REGISTERED, key=lambda rid: (rank.get(rid, len(ORDER)), rid))
    return {rid: REGISTERED[rid]() for rid in ids}
