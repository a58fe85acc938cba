"""Benchmark of `podcheck --fix`.

1. A healthy simulated pod (installed by one --fix, so every marker is recorded): `podcheck --fix`
   against `podcheck` alone, interleaved in the same run. Target: ratio <= 1.15 (a resumed pod pays
   nothing for --fix: no lock, no write, no installer).
2. A bare simulated pod (empty workspace, local ComfyUI upstream, local wheelhouse): wall time of the
   first `podcheck --fix` (venv, torch 2.13.0 CPU, ComfyUI and its requirements, sage, launch, sync).
3. The same bare pod with `--fix --background`: when the command returns, and when ComfyUI answers.

    python bench/fix.py [--runs 5] [--skip-bare]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fixsim  # noqa: E402


def timed(pod, *args: str) -> tuple[float, int]:
    began = time.perf_counter()
    run = pod.podcheck(*args)
    return time.perf_counter() - began, run.rc


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def healthy(root: Path, runs: int) -> None:
    pod = fixsim.bare_pod(root)
    try:
        first = pod.podcheck("--fix", "--json", "-")
        if first.rc != 0:
            sys.exit(f"the bare pod did not reach all-pass:\n{first.stdout[-3000:]}\n{first.stderr[-2000:]}")
        bare_s = json.loads(first.stdout)["duration_s"]
        timed(pod), timed(pod, "--fix")  # warm caches for both
        check_s, fix_s = [], []
        for _ in range(runs):  # interleaved, so both see the same machine load
            seconds, rc = timed(pod)
            check_s.append(seconds)
            seconds, rc_fix = timed(pod, "--fix")
            fix_s.append(seconds)
            if rc or rc_fix:
                sys.exit("the healthy pod stopped passing during the benchmark")
    finally:
        fixsim.stop_pod(root)
    c, f = statistics.median(check_s), statistics.median(fix_s)
    print(f"bare pod, first `podcheck --fix` (venv, torch, ComfyUI, sage, launch, sync): {bare_s:.1f} s")
    print(f"healthy pod, `podcheck`:       median {c:.3f} s  (runs: {', '.join(f'{x:.2f}' for x in check_s)})")
    print(f"healthy pod, `podcheck --fix`: median {f:.3f} s  (runs: {', '.join(f'{x:.2f}' for x in fix_s)})")
    print(f"ratio --fix / check on a healthy pod: {f / c:.3f}  (target <= 1.15)")


def background(root: Path) -> None:
    pod = fixsim.bare_pod(root)
    port = pod.settings["comfyui"]["port"]
    try:
        began = time.perf_counter()
        run = pod.podcheck("--fix", "--background", "--json", "-")
        returned = time.perf_counter() - began
        up = fixsim.wait_for(lambda: answers(port), timeout=900, step=0.1)
        up_s = time.perf_counter() - began
        progress = pod.state_dir / "background.json"
        fixsim.wait_for(lambda: (fixsim.read_json(progress) or {}).get("state") == "done", timeout=900)
        done_s = time.perf_counter() - began
    finally:
        fixsim.stop_pod(root)
    if not up:
        sys.exit(f"ComfyUI never answered:\n{(pod.state_dir / 'background.log').read_text()[-3000:]}")
    print(f"bare pod, `podcheck --fix --background`: returned after {returned:.1f} s (exit {run.rc}); "
          f"ComfyUI answered after {up_s:.1f} s; background run done after {done_s:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--skip-bare", action="store_true", help="only the healthy-pod ratio")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        healthy(Path(tmp) / "healthy", args.runs)
        if not args.skip_bare:
            background(Path(tmp) / "background")


if __name__ == "__main__":
    main()
