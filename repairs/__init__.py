"""podcheck's repairs: one module per area; idempotent, safe on a shared volume.

Each module registers its repairs with `podcheck.repair.register` (the model and the registry live
in podcheck/repair.py, the loop in podcheck/fixer.py); every module of this package is imported
when the registry is read, so a new area is a new file here.
"""


def run_one(cfg, repair_id, **kw):
    """Run one registered repair on the local pod now, under the fix lock (see podcheck.fixer.run_one)."""
    from podcheck.fixer import run_one as run

    return run(cfg, repair_id, **kw)
