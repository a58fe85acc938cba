"""Benchmark: `podcheck --hosts @inventory --parallel P` over 1, 8, 32 and 64 simulated pods.

Every pod is a real sshd on 127.0.0.1 (tests/fleetsim.py: root logs in with /bin/sh, no
~/.bashrc) with its own workspace; the pod python is a bare venv (no torch: the probe is cheap,
gpu.torch_build fails the same way on every pod), so the figures are podcheck's own cost.
Per point it prints the wall time, the controller's CPU seconds per pod (podcheck, its xdist
workers, its ssh clients and ssh masters: everything in a cpuacct cgroup made for the run; the pod
side, under sshd, is not counted), the peak RSS of the largest controller process, and the ratio
of the wall time to (pods / parallel) x the one-pod time.
Targets: < 0.15 s CPU per pod; 64 pods at --parallel 16 within 1.3x that ideal.

    python bench/fleet.py [--pods 1 8 32 64] [--parallel 16] [--scheme ssh|paramiko] [--select ID ...]
"""
from __future__ import annotations

import argparse
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import fleetsim  # noqa: E402
import podsim  # noqa: E402

CPUACCT = Path("/sys/fs/cgroup/cpuacct")


def measured(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, float, int]:
    """(wall s, CPU s of the whole process tree, peak RSS MiB of its largest process, exit code)."""
    group = CPUACCT / f"podcheck-bench-{os.getpid()}"
    use_cgroup = CPUACCT.is_dir() and os.geteuid() == 0
    if use_cgroup:
        group.mkdir(exist_ok=True)
        argv = ["sh", "-c", f'echo $$ > {group}/cgroup.procs && exec "$@"', "_", *argv]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if use_cgroup:
        time.sleep(0.2)  # the ssh masters exit just after podcheck asked them to
        cpu = int((group / "cpuacct.usage").read_text()) / 1e9
        group.rmdir()
    else:  # only what was reaped: ssh masters (daemons) are missed
        cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if done.returncode not in (0, 1, 4, 5):
        raise SystemExit(f"podcheck failed (exit {done.returncode}): {done.stderr[-2000:]}")
    return wall, cpu, after.ru_maxrss / 1024, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--scheme", default="ssh", choices=["ssh", "paramiko"])
    parser.add_argument("--select", action="append", default=[])
    args = parser.parse_args()
    most = max(args.pods)
    names = [f"pod-{i}" for i in range(1, most + 1)]
    sim = fleetsim.start(names)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-fleet-") as tmp:
            root = Path(tmp)
            bare = podsim.bare_venv(root / "venv")
            text = podsim.toml_dumps({"pod": {"gpu": "absent", "user": "alice", "python": str(bare)},
                                      "torch": {"cuda": "cpu"}, "attention": {"sage": "off"}})
            for name in names:
                ws = root / name
                for folder in ("output", "input", "workflows"):
                    (ws / folder / "alice").mkdir(parents=True)
                text += podsim.toml_dumps({f'hosts."{name}".pod': {"workspace": str(ws)}})
            (root / "podcheck.toml").write_text(text)
            env = {**os.environ, "PODCHECK_CONFIG": str(root / "podcheck.toml")}
            env.pop("PODCHECK_WORKSPACE", None)
            select = [a for s in args.select for a in ("--select", s)]
            load = os.getloadavg()
            print(f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs; "
                  f"scheme {args.scheme}; pod python: a bare venv (no torch)")
            print(f"{'pods':>5} {'parallel':>8} {'wall s':>8} {'CPU s/pod':>10} {'peak RSS MiB':>13} {'ideal s':>8} {'ratio':>6}")
            one = None
            for pods in sorted(args.pods):
                inventory = root / f"inventory-{pods}.txt"
                inventory.write_text("".join(f"{args.scheme}://{n}\n" for n in names[:pods]))
                parallel = min(args.parallel, pods)
                argv = [sys.executable, "-m", "podcheck", "--hosts", f"@{inventory}", "--ssh-config",
                        str(sim.ssh_config), "--parallel", str(parallel), "--json", str(root / f"out-{pods}.json"),
                        *select]
                wall, cpu, rss, _ = measured(argv, env, root)
                if one is None:
                    one = wall if pods == 1 else None
                ideal = math.ceil(pods / parallel) * one if one else float("nan")
                print(f"{pods:>5} {parallel:>8} {wall:>8.2f} {cpu / pods:>10.3f} {rss:>13.0f} {ideal:>8.2f} "
                      f"{wall / ideal if one else float('nan'):>6.2f}", flush=True)
            load = os.getloadavg()
            print(f"load average after: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
