"""Benchmark of `podcheck --fix`.

1. The really healthy pod of bench/check.py (real ComfyUI 0.3.64 running, sync loop, every check
   passing): `podcheck --fix` against `podcheck` alone, interleaved. Target: ratio <= 1.05 (a healthy
   pod pays nothing for --fix: no lock, no write, no installer).
2. A bare pod with the real ComfyUI upstream (tests/realparts.bare_pod: empty workspace, the CUDA
   torch set and ComfyUI's requirements from the local wheelhouse): wall time of the first
   `podcheck --fix` until every check passes.
3. The same bare pod with `--fix --background`: when the command returns, when ComfyUI answers, and
   when the background run is done.

    python bench/fix.py [--runs 7] [--skip-bare]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import check  # noqa: E402  (bench/check.py: the healthy pod and the interleaved timing)
import fixsim  # noqa: E402
import realparts  # noqa: E402

TARGET = 1.05


def answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


def healthy(root: Path, runs: int) -> None:
    pod = check.healthy(root)
    try:
        _, check_s = check.measure(pod, runs)
        _, fix_s = check.measure(pod, runs, ("--fix",))
    finally:
        fixsim.stop_pod(root)
    c, f = statistics.median(check_s), statistics.median(fix_s)
    print(check.row("healthy pod, `podcheck`      ", check_s))
    print(check.row("healthy pod, `podcheck --fix`", fix_s))
    print(f"ratio --fix / check on a healthy pod: {f / c:.3f}  (target <= {TARGET}); {check.machine()}")


def bare(root: Path) -> None:
    pod = realparts.bare_pod(root)
    try:
        began = time.perf_counter()
        run = pod.podcheck("--fix", "--json", "-", timeout=3600)
        seconds = time.perf_counter() - began
    finally:
        fixsim.stop_pod(root)
    failing = [r["id"] for r in (run.json or {}).get("results", []) if r["status"] not in ("passed", "skipped")]
    print(f"bare real-ComfyUI pod, first `podcheck --fix`: {seconds:.0f} s (exit {run.rc}, failing: {failing or 'none'}); "
          f"{check.machine()}")


def background(root: Path) -> None:
    pod = realparts.bare_pod(root)
    port = pod.settings["comfyui"]["port"]
    try:
        began = time.perf_counter()
        run = pod.podcheck("--fix", "--background", "--json", "-", timeout=600)
        returned = time.perf_counter() - began
        up = fixsim.wait_for(lambda: answers(port), timeout=3600, step=0.5)
        up_s = time.perf_counter() - began
        progress = pod.state_dir / "background.json"
        fixsim.wait_for(lambda: (fixsim.read_json(progress) or {}).get("state") == "done", timeout=3600, step=0.5)
        done_s = time.perf_counter() - began
        after = pod.podcheck("--json", "-", timeout=900)
    finally:
        fixsim.stop_pod(root)
    if not up:
        sys.exit(f"ComfyUI never answered:\n{(pod.state_dir / 'background.log').read_text()[-3000:]}")
    print(f"bare real-ComfyUI pod, `podcheck --fix --background`: returned after {returned:.1f} s (exit {run.rc}); "
          f"ComfyUI answered after {up_s:.0f} s; background run done after {done_s:.0f} s; "
          f"then `podcheck` exit {after.rc}; {check.machine()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--skip-bare", action="store_true", help="only the healthy-pod ratio")
    parser.add_argument("--only-bare", action="store_true", help="only the bare-pod wall times")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if not args.only_bare:
            healthy(Path(tmp) / "healthy", args.runs)
        if not args.skip_bare:
            bare(Path(tmp) / "bare")
            background(Path(tmp) / "background")


if __name__ == "__main__":
    main()
