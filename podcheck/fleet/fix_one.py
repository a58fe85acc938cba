"""One pod's `--fix` in its own process, for podcheck.fleet.fix: `python -m podcheck.fleet.fix_one JOB.json`.

The job names the pod (URL and testinfra options), its config (after `[hosts]` overrides) and
the fleet check's results to start from; the after-report is printed as JSON on stdout, the
fixer's progress goes to stderr. Exit 0 healthy after, 1 not, 2 the fix could not run.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from podcheck import runner
from podcheck.config import from_data
from podcheck.fix import fixer
from podcheck.fleet import sshmux
from podcheck.results import CheckResult


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[0]).read_text())
    config = from_data(job["config"]["data"], job["config"]["source"])
    options = job["options"]
    background = config.fix.background if job["background"] is None else job["background"]
    given = [CheckResult(**r) for r in job["given"]]
    with sshmux.Multiplexer() as mux:
        ssh_config = options.get("ssh_config")
        if sshmux.uses_ssh(job["spec"]) and not background:
            ssh_config = mux.wrap(ssh_config)
        target = runner.Target(job["spec"], ssh_config=ssh_config, ssh_identity_file=options.get("ssh_identity_file"))
        opts = fixer.Options(profile=job["profile"], select=job["select"], dry_run=job["dry_run"],
                             safe_only=job["safe_only"], background=background, given=given)
        try:
            report = fixer.fix(config, target, opts)
        except runner.RunError as exc:
            print(f"{job['name']}: no verdict: {exc}", file=sys.stderr)
            return 2
    report.host = job["name"]
    print(json.dumps(report.as_dict()))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
