"""Benchmark: the idle cost of `podcheck watch` and the latency of `podcheck serve`'s cached /healthz.

On a healthy simulated CPU pod (a ComfyUI stand-in answering on its port, podcheck's sync loop
running against a local rclone alias remote), so that watch's default selection passes:
- watch runs for --duration seconds (default 300) at its default interval (30 s); its CPU time
  (its own, and with the check commands it ran) over the wall time, and its RSS sampled every second.
  Targets: under 1 % of one core and under 100 MB RSS.
- serve answers --requests sequential GET /healthz from its cache (a new connection each, as curl
  would); median and 95th percentile. Target: median under 5 ms.

    python bench/watch.py [--duration 300] [--interval 30] [--select ID ...] [--requests 500]
"""
from __future__ import annotations

import argparse
import http.client
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import podsim  # noqa: E402
import sim_comfyui  # noqa: E402

from podcheck.domain import syncloop_control  # noqa: E402

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(own, own + waited-for children) CPU seconds of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    utime, stime, cutime, cstime = (int(x) for x in fields[11:15])
    return (utime + stime) / TICK, (utime + stime + cutime + cstime) / TICK


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def bench_watch(pod: podsim.SimPod, duration: float, interval: float, select: list[str]) -> None:
    args = [sys.executable, "-m", "podcheck", "watch", "--interval", str(interval),
            *[a for s in select for a in ("--select", s)]]
    env = {**os.environ, "PODCHECK_CONFIG": str(pod.config_path)}
    proc = subprocess.Popen(args, env=env, cwd=pod.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(min(5.0, duration / 4))  # start-up (imports, first run) is not idle cost
        own0, all0 = cpu_seconds(proc.pid)
        started = time.monotonic()
        samples = []
        while time.monotonic() - started < duration:
            samples.append(rss_mb(proc.pid))
            time.sleep(1.0)
        own1, all1 = cpu_seconds(proc.pid)
        wall = time.monotonic() - started
    except FileNotFoundError:  # /proc/<pid> is gone: watch exited
        raise SystemExit(f"watch exited {proc.wait()}: {proc.stderr.read().decode().strip()}") from None
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(10)
    log = (pod.state_dir / "watch.log").read_text().splitlines()
    print(f"watch: {wall:.0f} s at --interval {interval:g} ({', '.join(select) or 'its default selection'}), "
          f"{len(log)} log lines")
    print(f"  CPU, watch process alone:          {100 * (own1 - own0) / wall:.2f} % of one core  (target < 1 %)")
    print(f"  CPU, with the commands it ran:     {100 * (all1 - all0) / wall:.2f} % of one core")
    print(f"  RSS: median {statistics.median(samples):.1f} MB, max {max(samples):.1f} MB  (target < 100 MB)")


def bench_serve(pod: podsim.SimPod, requests: int, select: list[str]) -> None:
    pod.configure(serve={"cache_seconds": 3600.0})
    env = {**os.environ, "PODCHECK_CONFIG": str(pod.config_path)}
    proc = subprocess.Popen([sys.executable, "-m", "podcheck", "serve", "--port", "0",
                             *[a for s in select for a in ("--select", s)]],
                            env=env, cwd=pod.root, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline().split()[2].rstrip("/").rsplit(":", 1)[1])

        def healthz() -> float:
            started = time.perf_counter()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            conn.close()
            return time.perf_counter() - started

        first = healthz()  # the run that fills the cache
        times = sorted(healthz() for _ in range(requests))
    finally:
        proc.terminate()
        proc.wait(10)
    median, p95 = statistics.median(times), times[int(0.95 * (len(times) - 1))]
    print(f"serve: first /healthz (a check run) {1000 * first:.0f} ms; cached, {requests} requests: "
          f"median {1000 * median:.2f} ms, p95 {1000 * p95:.2f} ms  (target median < 5 ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=300.0, help="seconds of watch to measure")
    parser.add_argument("--interval", type=float, default=30.0, help="watch --interval")
    parser.add_argument("--select", action="append", default=[], help="checks (default: watch's own selection)")
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        pod, stop = healthy_pod(root)
        try:
            check = pod.podcheck("--json", "-", *[a for s in args.select for a in ("--select", s)])
            print("checks: " + ", ".join(f"{r['id']} {r['status']}" for r in check.json["results"]))
            bench_serve(pod, args.requests, args.select)
            bench_watch(pod, args.duration, args.interval, args.select)
        finally:
            stop()


def healthy_pod(root: Path):
    """A CPU pod where watch has nothing to repair; and the function that stops what it started."""
    python = podsim.torch_venv()
    pod = sim_comfyui.comfy_pod(root, python, sage="off")
    drive = root / "drive"
    drive.mkdir()
    conf = root / "rclone.conf"
    conf.write_text(f"[gdrive]\ntype = alias\nremote = {drive}\n")
    conf.chmod(0o600)
    launcher = sim_comfyui.Launcher()
    port = sim_comfyui.free_port()
    pod.configure(pod={"state_dir": str(root / "state")}, comfyui={"port": port},
                  sync={"rclone_config": str(conf), "remote": "gdrive", "min_age": "0s"})
    launcher.start(pod.workspace / "ComfyUI", "--cpu", *sim_comfyui.user_flags(pod.workspace, "alice"),
                   python=python, log=root / "state" / "comfyui.log", port=port)
    live = pod.live()
    syncloop_control.start(live)

    def stop() -> None:
        syncloop_control.stop(live, timeout=5)
        launcher.stop_all()
    return pod, stop


if __name__ == "__main__":
    main()
