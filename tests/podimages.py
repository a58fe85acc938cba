"""Real podman images for the image-profile tests, built once per machine without any registry.

BASE is the cached debootstrap rootfs (podsim.rootfs()) imported with `podman import`; POD adds
what a pod image holds (python3, ffmpeg, a /venv with the CPU build of torch 2.13.0) with a real
`podman build`. Both stay in podman's store; `podman image exists` says whether to build, a file
lock keeps parallel workers from building twice. Test images are built FROM them and removed.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import podsim

BASE = "localhost/podcheck-base:bookworm"
POD = "localhost/podcheck-pod:torch-2.13.0"
LABEL = "podcheck.throwaway"

POD_CONTAINERFILE = """\
FROM {base}
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\
        python3 python3-venv ffmpeg >/dev/null && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /venv && /venv/bin/pip install -q --no-index --find-links /wheels {torch}
"""


def podman(*args: str, timeout: float = 600, check: bool = True, **kw) -> subprocess.CompletedProcess:
    done = subprocess.run(["podman", *args], check=False, capture_output=True, text=True, timeout=timeout, **kw)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed: {done.stderr[-2000:]}")
    return done


def why_not() -> str | None:
    """Why podman images cannot be tested here (None: they can)."""
    if os.geteuid() != 0 or not shutil.which("podman") or not shutil.which("debootstrap"):
        return "needs root, podman and debootstrap (.ci/run installs them)"
    return None


def exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False, timeout=60).returncode == 0


def base_image() -> str:
    """BASE: the debootstrap rootfs as an image (`tar -C ROOTFS -c . | podman import - BASE`)."""
    if exists(BASE):
        return BASE
    rootfs = podsim.rootfs()
    with podsim.locked("podman-base"):
        if not exists(BASE):
            tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
            podman("import", "-q", "-", BASE, stdin=tar.stdout)
            tar.stdout.close()
            if tar.wait() != 0:
                raise RuntimeError("tar of the rootfs failed")
    return BASE


def pod_image() -> str:
    """POD: BASE plus python3, ffmpeg and /venv with torch 2.13.0 (CPU), by a real `podman build`."""
    if exists(POD):
        return POD
    base_image()

    def download(tmp: Path) -> None:  # the wheels, so the build needs no index
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                               podsim.TORCH_SPEC, "-d", str(tmp)], check=False, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"pip download failed: {done.stderr[-2000:]}")
    wheels = podsim.cached("image-wheels-torch-2.13.0", download)
    with podsim.locked("podman-pod"):
        if not exists(POD):
            context = podsim.CACHE / "image-context-empty"
            context.mkdir(parents=True, exist_ok=True)
            (context / "Containerfile").write_text(POD_CONTAINERFILE.format(base=BASE, torch=podsim.TORCH_SPEC))
            podman("build", "-q", "-v", f"{wheels}:/wheels:ro", "-t", POD, str(context), timeout=1800)
    return POD


class Builder:
    """`podman build` of test images from a folder; every tag it built is removed at close()."""

    def __init__(self) -> None:
        self.tags: list[str] = []

    def __call__(self, context: Path, tag: str) -> str:
        built = podman("build", "-q", "-t", tag, str(context))
        self.tags.append(built.stdout.split()[-1])  # its id: a rebuild under the same tag leaves the old one untagged
        return tag

    def close(self) -> None:
        if self.tags:
            podman("rmi", "-f", *self.tags, check=False)


def leftovers() -> list[str]:
    """Names of podcheck's throwaway containers that still exist."""
    listed = podman("ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}", timeout=60)
    return listed.stdout.split()


def realparts() -> Path | None:
    """The shared real third-party parts (shared/realparts beside the checkout), if present."""
    here = podsim.REPO
    for folder in (os.environ.get("PODCHECK_REALPARTS"), here.parent / "shared" / "realparts",
                   here.parent.parent / "shared" / "realparts"):
        if folder and (Path(folder) / "ComfyUI-0.3.64.tar.gz").exists():
            return Path(folder)
    return None
