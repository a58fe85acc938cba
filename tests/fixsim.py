"""Bare simulated pods for `podcheck --fix`: an empty workspace, a local git repo as the ComfyUI
upstream, a local wheelhouse (torch 2.13.0 CPU, its dependencies, the requirements' packages and a
tiny SageAttention stand-in wheel), and PATH shims that log every git and pip invocation.

The wheelhouse is built once per machine (podsim.cached); every install in these tests runs pip
for real with `--no-index --find-links <wheelhouse> --no-compile` (compiling torch's .py files is
two thirds of its install time and proves nothing here).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import podsim

SIX = "six==1.17.0"  # a real small package ComfyUI's stand-in requirements.txt asks for
TABULATE = "tabulate==0.10.0"  # another one, for a requirements.txt that changes
SAGE_VERSION = "1.0.6+standin"

SAGE_INIT = '''"""SageAttention stand-in for podcheck's tests: the 1.0.6 API, importable without triton (CPU pods)."""
__version__ = "1.0.6+standin"


def sageattn(q, k, v, tensor_layout="HND", is_causal=False, sm_scale=None, attn_mask=None, **kw):
    raise AssertionError("Input tensors must be on cuda.")


sageattn_varlen = sageattn
'''


def sage_wheel(dest: Path) -> Path:
    """A real wheel of the stand-in package `sageattention` (pure python, no dependencies)."""
    name = f"sageattention-{SAGE_VERSION}"
    files = {
        "sageattention/__init__.py": SAGE_INIT,
        f"{name}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: sageattention\nVersion: {SAGE_VERSION}\n"
                                      "Summary: SageAttention stand-in for podcheck tests\n",
        f"{name}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: podcheck-tests\nRoot-Is-Purelib: true\n"
                                   "Tag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    record.append(f"{name}.dist-info/RECORD,,")
    wheel = dest / f"{name}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, text in files.items():
            zf.writestr(path, text)
        zf.writestr(f"{name}.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def wheelhouse() -> Path:
    """torch 2.13.0 (CPU, from the machine's wheel store), its dependencies, six and the sage stand-in."""
    def build(tmp: Path) -> None:
        done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                               "-d", str(tmp), podsim.TORCH_SPEC, SIX, TABULATE], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"pip download failed:\n{done.stderr[-2000:]}")
        sage_wheel(tmp)
    return podsim.cached("fix-wheelhouse-2", build)


def pip_args() -> list[str]:
    return ["--no-index", "--find-links", str(wheelhouse()), "--no-compile"]


def upstream(root: Path, requirements: tuple[str, ...] = (SIX,)) -> Path:
    """A git repo standing in for github.com/comfyanonymous/ComfyUI (the catalogue's stand-in ComfyUI)."""
    from sim_comfyui import lay_comfyui

    repo = lay_comfyui(root / "upstream-ComfyUI", requirements=requirements)
    git(repo, "init", "-q", "-b", "master")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "ComfyUI stand-in")
    return repo


def git(repo: Path, *args: str) -> str:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@t"}
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


def shims(root: Path) -> tuple[Path, Path]:
    """A folder of `git` and `pip`-logging shims to put first on PATH, and the log they append to."""
    folder, log = root / "shims", root / "shims.log"
    folder.mkdir(parents=True, exist_ok=True)
    real_git = shutil.which("git")
    (folder / "git").write_text(f'#!/bin/sh\necho "git $*" >> {log}\nexec {real_git} "$@"\n')
    (folder / "git").chmod(0o755)
    return folder, log


def log_python(python: Path, log: Path) -> None:
    """Make the pod venv's python log its arguments (so `python -m pip ...` shows up), still as the venv."""
    real = python.with_name(python.name + "-real")
    if not real.exists():
        python.rename(real)
    python.write_text(f'#!/bin/sh\necho "python $*" >> {log}\nexec {real} "$@"\n')
    python.chmod(0o755)


def bare_pod(root: Path, *, sage: str = "required", user: str = "alice", comfyui: bool = True) -> podsim.SimPod:
    """An empty workspace whose config points at a local upstream and wheelhouse; no GPU, CPU torch."""
    pod = podsim.SimPod(root)
    pod.workspace.mkdir(parents=True, exist_ok=True)
    repo = upstream(root) if comfyui else root / "no-upstream"
    drive = root / "drive"  # the "Google Drive": an rclone alias remote on local disk
    drive.mkdir()
    rclone_conf = root / "rclone.conf"
    rclone_conf.write_text(f"[gdrive]\ntype = alias\nremote = {drive}\n")
    rclone_conf.chmod(0o600)
    pod.configure(
        pod={"workspace": str(pod.workspace), "gpu": "absent", "user": user, "probe_timeout": 120.0},
        # the stand-in ComfyUI needs no torchvision/torchaudio; realparts.bare_pod installs the real set
        torch={"cuda": "cpu", "spec": podsim.TORCH_SPEC, "vision_spec": "", "audio_spec": "", "index_url": ""},
        attention={"sage": sage, "sage_spec": "sageattention"},
        comfyui={"repo": str(repo), "ref": "master", "listen": "127.0.0.1", "port": free_port(),
                 "http_timeout": 2.0, "extra_args": ["--cpu"], "enabled": comfyui},
        sync={"rclone_config": str(rclone_conf), "remote": "gdrive", "interval_seconds": 5, "min_age": "0s"},
        fix={"base_python": podsim.BASE_PYTHON, "pip_args": pip_args(), "launch_timeout": 60.0,
             "ffmpeg_install": ["true"]},  # the machine has ffmpeg; the apt path has its own test
    )
    return pod


def free_port() -> int:
    import socket
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def tree(root: Path) -> dict[str, tuple[str, int]]:
    """Every path under root -> (kind, size), for 'nothing changed' assertions."""
    out = {}
    for path in sorted(root.rglob("*")):
        kind = "link" if path.is_symlink() else "dir" if path.is_dir() else "file"
        out[str(path.relative_to(root))] = (kind, 0 if kind != "file" else path.stat().st_size)
    return out


def wait_for(predicate, timeout: float, step: float = 0.05):
    """podsim.wait_for, but None instead of an error when the moment passed (a crash test's race)."""
    try:
        return podsim.wait_for(predicate, timeout=timeout, step=step)
    except AssertionError:
        return None


def read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def stop_pod(root: Path) -> None:
    """Kill every process a test pod left running (ComfyUI, sync loop, background fixer): any process
    whose command line names a path under `root`, with its process group."""
    import signal

    import psutil

    mine = os.getpid()
    victims = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid != mine and any(str(root) in arg for arg in proc.info.get("cmdline") or []):
            victims.append(proc)
    for proc in victims:
        try:
            os.killpg(os.getpgid(proc.pid), signal.SIGKILL) if os.getpgid(proc.pid) == proc.pid else proc.kill()
        except (ProcessLookupError, psutil.Error, PermissionError):
            pass
    psutil.wait_procs(victims, timeout=5)


def layered_pod(root: Path, *, sage: str = "required") -> podsim.SimPod:
    """A bare pod whose pod python already has torch (a venv that sees the cached torch venv): for tests
    about what comes after torch, without paying for a torch install."""
    pod = bare_pod(root, sage=sage)
    podsim.layered_venv(pod.workspace / "venv")
    return pod


def sage_python(dest: Path) -> Path:
    """A pod python with torch (cached venv) and the SageAttention stand-in."""
    python = podsim.layered_venv(dest)
    podsim.pip(sys.executable, str(next(wheelhouse().glob("sageattention-*.whl"))),
               target=podsim.site_packages(dest))
    return python


# A plan cannot know the clock or a pid that does not exist yet: quarantine/backup stamps, the launch
# header's time and a new ComfyUI's pidfile line are the only words it may differ in.
_UNKNOWABLE = [(re.compile(r"\d{8}-\d{6}(\.\d+)?|\d{8}T\d{6}Z|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d"),
                "<time>"), (re.compile(r"(\.pid) (\d+|'<pid>')$"), r"\1 <pid>")]


def unknowable(commands: list[str]) -> list[str]:
    """Commands with the words a dry run cannot foresee replaced by placeholders."""
    out = []
    for command in commands:
        for pattern, placeholder in _UNKNOWABLE:
            command = pattern.sub(placeholder, command)
        out.append(command)
    return out


def fix_as_planned(pod: podsim.SimPod, *args: str, env: dict[str, str] | None = None):
    """`--fix <args> --dry-run`, then `--fix <args>` on the same pod: every repair the dry run planned
    ran exactly the commands it listed (apply() and its plan are one code path); the dry run changed no
    file outside state_dir (what it does there is branch safety's). The real run."""
    before = {k: v for k, v in tree(pod.root).items() if ".podcheck" not in k}
    dry = pod.podcheck("--fix", *args, "--dry-run", "--json", "-", env=env)
    assert {k: v for k, v in tree(pod.root).items() if ".podcheck" not in k} == before, "the dry run changed files"
    planned = {r["id"]: r for r in dry.json["repairs"] if r["message"].startswith("dry run: would run")}
    assert planned, dry.stderr
    real = pod.podcheck("--fix", *args, "--json", "-", env=env)
    ran = {r["id"]: r for r in real.json["repairs"]}
    for rid, plan in planned.items():
        assert unknowable(plan["commands"]) == unknowable(ran[rid]["commands"]), (rid, plan, ran[rid])
    return real
