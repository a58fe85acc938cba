"""Benchmark: `podcheck` on a healthy simulated CPU pod vs the pod python's bare `import torch`.

The facts probe imports torch in the pod's interpreter, the one cost podcheck cannot avoid; the
rest of a check run should add little on top. Target: ratio <= 1.5 on the CI machine kind.

    python bench/check.py [--runs 5] [--select ID ...]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import podsim  # noqa: E402


def timed(argv, **kw) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=False, capture_output=True, **kw)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--select", action="append", default=[])
    args = parser.parse_args()
    python = podsim.torch_venv()
    with tempfile.TemporaryDirectory() as tmp:
        pod = podsim.cpu_pod(Path(tmp), python)
        select = [a for s in args.select for a in ("--select", s)]
        check = [sys.executable, "-m", "podcheck", "--config", str(pod.config_path), *select]
        probe = [str(python), "-c", "import torch"]
        run = pod.podcheck(*select)
        print(run.stdout)
        timed(probe), timed(check)  # warm the page cache for both
        torch_s, check_s = [], []
        for _ in range(args.runs):  # interleaved, so both see the same machine load
            torch_s.append(timed(probe))
            check_s.append(timed(check, cwd=tmp))
    t, c = statistics.median(torch_s), statistics.median(check_s)
    print(f"pod python `import torch`: median {t:.3f} s  (runs: {', '.join(f'{x:.2f}' for x in torch_s)})")
    print(f"podcheck (whole run):      median {c:.3f} s  (runs: {', '.join(f'{x:.2f}' for x in check_s)})")
    print(f"ratio podcheck / import torch: {c / t:.2f}  (target <= 1.5)")


if __name__ == "__main__":
    main()
