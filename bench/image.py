"""Benchmark: one image validation through podman (issue 13), and what the CI setup costs.

Builds the tests' CI image (FROM the cached pod image: python3, ffmpeg, a torch 2.13.0 CPU venv;
plus a small UI tree and a start.sh), writes its manifest, then runs the CLI as CI would,
`podcheck --profile image --hosts podman://IMAGE --junit-xml ...`, several times and prints:

- the median wall time of one validation (a new process, a throwaway container started and
  removed, the facts probe importing torch inside the container);
- the engine's share: `podman run -d ... sleep` plus `podman rm -f`, timed alone;
- with --rebuild, the one-time setup the tests pay on a fresh CI machine: `podman import` of the
  debootstrap rootfs and the `podman build` of the pod image (the cached images are rebuilt).

    python bench/image.py [--runs 3] [--rebuild]

Not a test: it prints figures and exits 0 whatever they are. Needs root and podman (see .ci/run).
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

import podimages  # noqa: E402
import podsim  # noqa: E402

START = "#!/bin/sh\nexec /venv/bin/python main.py --listen 0.0.0.0 --use-sage-attention\n"


def timed(argv: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, **kw)
    return time.monotonic() - started, done


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rebuild", action="store_true", help="also time the base import and the pod image build")
    args = parser.parse_args()
    if podimages.why_not():
        print(f"cannot run: {podimages.why_not()}")
        return 0
    if args.rebuild:
        podimages.podman("rmi", "-f", podimages.POD, podimages.BASE, check=False)
        started = time.monotonic()
        podimages.base_image()
        print(f"podman import of the rootfs: {time.monotonic() - started:.1f} s")
        started = time.monotonic()
        podimages.pod_image()
        print(f"podman build of the pod image: {time.monotonic() - started:.1f} s")
    pod_image = podimages.pod_image()
    with tempfile.TemporaryDirectory(prefix="podcheck-bench-image-") as tmp:
        root = Path(tmp)
        (root / "src/ui").mkdir(parents=True)
        (root / "src/ui/app.py").write_text("print('ui')\n")
        (root / "src/start.sh").write_text(START)
        (root / "src/Containerfile").write_text(f"FROM {pod_image}\nCOPY ui /app/ui\nCOPY start.sh /start.sh\n")
        image = f"localhost/podcheck-bench:{os.getpid()}"
        podimages.podman("build", "-q", "-t", image, str(root / "src"))
        try:
            pod = podsim.SimPod(root).configure(
                pod={"python": "/venv/bin/python", "gpu": "absent", "probe_timeout": 300.0},
                torch={"cuda": "cpu"}, attention={"sage": "required"},
                image={"sources": {"/app/ui": "src/ui", "/start.sh": "src/start.sh"}, "manifest": "manifest.json",
                       "start_scripts": ["/start.sh"]})
            env = {**os.environ, "PODCHECK_CONFIG": str(pod.config_path)}
            cli = [sys.executable, "-m", "podcheck"]
            subprocess.run([*cli, "manifest", "src/ui", "src/start.sh", "-o", "manifest.json"], cwd=root, env=env,
                           check=True, capture_output=True)
            walls = []
            for _ in range(args.runs):
                wall, done = timed([*cli, "--profile", "image", "--hosts", f"podman://{image}",
                                    "--junit-xml", str(root / "image.xml")], cwd=root, env=env)
                walls.append(wall)
                print(f"validation: exit {done.returncode}, {wall:.1f} s")
            engine = []
            for _ in range(args.runs):
                up, _done = timed(["podman", "run", "-d", "--rm", "--network", "none", "--stop-signal", "KILL",
                                   "--name", "podcheck-bench-c",
                                   "--entrypoint", "sleep", image, "60"])
                down, _done = timed(["podman", "rm", "-f", "podcheck-bench-c"])
                engine.append(up + down)
            print(f"one image validation: median {statistics.median(walls):.1f} s over {args.runs} run(s)")
            print(f"of which the throwaway container (run -d + rm -f): median {statistics.median(engine):.2f} s")
            print(f"load average now: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
        finally:
            podimages.podman("rmi", "-f", image, check=False)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
