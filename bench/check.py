"""Benchmark: `podcheck` on a really healthy pod vs the pod python's bare `import torch`.

The pod (tests/realparts.healthy_pod): the real ComfyUI 0.3.64 with ComfyUI-Manager, running on the
registry's CUDA torch 2.13.0 set with --cpu (no GPU here), sage required and importable, the user's
folders, and the managed rclone sync loop to a remote holding the user's files. One `podcheck --fix`
launches ComfyUI and the loop; the benchmark refuses to time anything unless every check then passes
(or is skipped for a stated reason: the GPU checks on `[pod] gpu = "absent"`).

The facts probe imports torch in the pod's interpreter, the one cost podcheck cannot avoid; the rest
of a check run overlaps with it. Target: median ratio <= 1.15.

    python bench/check.py [--runs 7] [--keep]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fixsim  # noqa: E402
import realparts  # noqa: E402

TARGET = 1.15


def timed(argv: list[str], **kw) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(argv, check=False, capture_output=True, **kw)
    return time.perf_counter() - started, done.returncode


def healthy(root: Path):
    """The healthy pod, after the one --fix that launches ComfyUI and the sync loop; exits unless all pass."""
    pod = realparts.healthy_pod(root)
    (pod.workspace / "output" / "alice").mkdir(parents=True, exist_ok=True)
    (pod.workspace / "output" / "alice" / "ComfyUI_00001_.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(4096))
    fixed = pod.podcheck("--fix", "--json", "-", timeout=1800)
    run = pod.podcheck("--json", "-", timeout=900)
    bad = {r["id"]: r["message"] for r in (run.json or {}).get("results", [])
           if r["status"] not in ("passed", "skipped") or (r["status"] == "skipped" and r.get("blocked_by"))}
    if run.rc != 0 or bad:
        sys.exit(f"the pod is not healthy after --fix (exit {fixed.rc}, then {run.rc}): {bad}\n{fixed.stdout[-3000:]}")
    skipped = {r["id"]: r["message"] for r in run.json["results"] if r["status"] == "skipped"}
    print(f"healthy pod: {len(run.json['results'])} checks, {len(skipped)} skipped: {skipped}")
    return pod


def measure(pod, runs: int, extra: tuple[str, ...] = ()) -> tuple[list[float], list[float]]:
    """Interleaved runs (both see the same machine load) of the pod python's `import torch` and of
    `podcheck` + `extra`; both warmed once first (page cache)."""
    env = {**os.environ, **pod.env, "PODCHECK_CONFIG": str(pod.config_path)}
    env.pop("PODCHECK_WORKSPACE", None)
    python = pod.settings["pod"]["python"]
    probe = [python, "-c", "import torch"]
    check = [sys.executable, "-m", "podcheck", *extra]
    timed(probe), timed(check, cwd=pod.root, env=env)
    torch_s, check_s = [], []
    for _ in range(runs):
        torch_s.append(timed(probe)[0])
        seconds, rc = timed(check, cwd=pod.root, env=env)
        if rc != 0:
            sys.exit(f"`podcheck {' '.join(extra)}` stopped passing during the benchmark (exit {rc})")
        check_s.append(seconds)
    return torch_s, check_s


def row(name: str, values: list[float]) -> str:
    return f"{name}: median {statistics.median(values):.3f} s  (runs: {', '.join(f'{x:.2f}' for x in values)})"


def machine() -> str:
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{os.cpu_count()} CPUs, load average {load} when it ended"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--keep", action="store_true", help="leave the pod (and its ComfyUI) running")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-check-"))
    try:
        pod = healthy(root)
        torch_s, check_s = measure(pod, args.runs)
    finally:
        if not args.keep:
            fixsim.stop_pod(root)
    t, c = statistics.median(torch_s), statistics.median(check_s)
    print(row("pod python `import torch`", torch_s))
    print(row("podcheck (whole run)      ", check_s))
    print(f"ratio podcheck / import torch: {c / t:.2f}  (target <= {TARGET}); {machine()}")


if __name__ == "__main__":
    main()
