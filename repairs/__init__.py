"""podcheck's repairs: one module per area; idempotent, safe on a shared volume.

Each module registers its repairs with `podcheck.fix.repair.register` (the model lives in
podcheck/fix/repair.py, the loop in podcheck/fix/fixer.py); podcheck.fix.registry imports every
module of this package, so a new area is a new file here.
"""

