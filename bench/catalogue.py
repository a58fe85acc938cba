"""Benchmark: the whole catalogue on a big workspace (issue 3).

Builds a workspace with 100,000 files under ComfyUI/custom_nodes and 20 users (output, input and
workflows folders with files), an rclone config, and a CPU pod python (the tests' cached torch venv
unless --python is given); then runs every check in this process (podcheck.runner, as the CLI does)
and the facts probe alone, several times each, and prints:

- the catalogue's own cost: median wall time of a full run minus the median time of the facts probe
  (target < 1.0 s on the CI machine kind), and the same measured directly: the catalogue with a pod
  python that answers at once (/bin/true), which is free of the probe's noise on a busy machine;
- podcheck's own peak RSS (this process; the probe is a child and not counted; target < 100 MB);
- the slowest checks.

    python bench/catalogue.py [--files 100000] [--users 20] [--runs 5] [--python PATH] [--keep DIR]

Not a test: it prints figures and exits 0 whatever they are.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def build_workspace(root: Path, files: int, users: int) -> Path:
    ws = root / "workspace"
    if (ws / ".built").exists():  # --keep DIR from an earlier run
        return ws
    nodes = ws / "ComfyUI" / "custom_nodes"
    per_node = 200
    for n in range((files + per_node - 1) // per_node):
        node = nodes / f"node_{n:04d}"
        (node / "js").mkdir(parents=True)
        for i in range(min(per_node, files - n * per_node)):
            sub = node / "js" if i % 2 else node
            (sub / f"f{i:03d}.py").write_text("# custom node file\n")
    comfy = ws / "ComfyUI"
    (comfy / "comfy").mkdir(parents=True)
    (comfy / "main.py").write_text("# ComfyUI stand-in for the benchmark\n")
    (comfy / "comfy" / "cli_args.py").write_text('parser.add_argument("--use-sage-attention", action="store_true")\n')
    (comfy / "requirements.txt").write_text("torch\n")
    for u in range(users):
        for kind in ("output", "input", "workflows"):
            folder = ws / kind / f"user{u:02d}"
            folder.mkdir(parents=True)
            for i in range(10):
                (folder / f"{kind}_{i:03d}.png").write_bytes(b"\x89PNG" + bytes(60))
    drive = root / "drive"
    drive.mkdir()
    conf = root / "rclone.conf"
    conf.write_text(f"[gdrive]\ntype = alias\nremote = {drive}\n")
    conf.chmod(0o600)
    (ws / ".built").write_text(f"{files} {users}\n")
    return ws


def write_config(root: Path, ws: Path, python: str) -> Path:
    path = root / "podcheck.toml"
    path.write_text(
        f'[pod]\nworkspace = "{ws}"\npython = "{python}"\ngpu = "absent"\nuser = "user00"\n'
        f'[torch]\ncuda = "cpu"\n[attention]\nsage = "off"\n'
        f'[sync]\nrclone_config = "{root / "rclone.conf"}"\nremote = "gdrive"\n')
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--users", type=int, default=20)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--python", help="the pod python (default: the tests' cached CPU torch venv)")
    ap.add_argument("--keep", help="build the workspace in this folder and keep it")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    python = args.python
    if not python:
        sys.path.insert(0, str(REPO / "tests"))
        import podsim
        python = str(podsim.torch_venv())

    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="podcheck-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        ws = build_workspace(root, args.files, args.users)
        built = time.perf_counter() - started
        cfg_path = write_config(root, ws, python)

        import testinfra

        from podcheck import config, facts, runner
        from podcheck.host.pod import Pod

        cfg = config.load(cfg_path, env={})
        totals, probes, report = [], [], None
        for _ in range(args.runs):  # interleaved, so a busy machine weighs on both alike
            t = time.perf_counter()
            report = runner.run(cfg)
            totals.append(time.perf_counter() - t)
            pod = Pod(cfg, testinfra.get_host("local://"))
            t = time.perf_counter()
            probed = facts.run_probe(pod)
            probes.append(time.perf_counter() - t)
        # The same catalogue with a pod python that answers at once (/bin/true: "probe printed no facts"):
        # the catalogue's own cost measured directly, free of the probe's noise on a busy machine.
        instant_cfg = config.load(write_config(root, ws, "/bin/true"), env={})
        instant = []
        for _ in range(args.runs):
            t = time.perf_counter()
            runner.run(instant_cfg)
            instant.append(time.perf_counter() - t)
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        total, probe = statistics.median(totals), statistics.median(probes)
        own = total - probe
        s = report.summary
        print(f"workspace: {args.files} files under ComfyUI/custom_nodes, {args.users} users (built in {built:.1f} s)")
        print(f"catalogue: {len(report.results)} checks ({s['passed']} passed, {s['failed']} failed, "
              f"{s['skipped']} skipped, {s['error']} error)")
        print(f"full runs: {', '.join(f'{x:.2f}' for x in totals)} s; median {total:.2f} s")
        print(f"facts probe alone: {', '.join(f'{x:.2f}' for x in probes)} s; median {probe:.2f} s"
              + (f" (probe error: {probed.probe_error})" if probed.probe_error else ""))
        print(f"catalogue's own cost: {own:.2f} s (target < 1.0 s): {'OK' if own < 1.0 else 'OVER'}")
        direct = statistics.median(instant)
        print(f"  measured directly with an instant pod python: {', '.join(f'{x:.2f}' for x in instant)} s; "
              f"median {direct:.2f} s: {'OK' if direct < 1.0 else 'OVER'}")
        print(f"podcheck's peak RSS: {peak_mb:.0f} MB (target < 100 MB): {'OK' if peak_mb < 100 else 'OVER'}")
        slow = sorted(report.results, key=lambda r: r.duration_s, reverse=True)[:6]
        print("slowest checks (last run): " + ", ".join(f"{r.id} {r.duration_s:.2f} s" for r in slow))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
