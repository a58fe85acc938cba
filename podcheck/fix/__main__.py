"""The background run of `--fix --background`: `python -m podcheck.fix ARGS` (spawned by fix.worker)."""
from __future__ import annotations

import json
import os
import sys

from podcheck import config as config_mod
from podcheck import runner
from podcheck.fix import fixer
from podcheck.results import CheckResult


def main(argv: list[str]) -> int:
    """Run the queued repairs under the fix lock, from the foreground's last check results."""
    args = json.loads(argv[0])
    cfg = config_mod.load(args["config"])
    target = runner.Target(**args["target"])
    opts = fixer.Options(profile=args["profile"], select=args["select"], worker=True, force=tuple(args["queue"]),
                         given=[CheckResult(**r) for r in args["results"]])
    with open(os.devnull, "w") as quiet:  # the progress log has every step; stdout keeps only crashes
        report = fixer.fix(cfg, target, opts, out=quiet)
    print(f"podcheck --fix (background): done, {'all pass' if report.ok else 'failures remain'}", flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
