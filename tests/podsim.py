"""Simulated pods built from real parts: venvs, files, processes. Shared by every test module.

Big parts (a venv with CPU torch 2.13.0, 900 MB) are built once per machine under
$PODCHECK_TEST_CACHE (default ~/.cache/podcheck-tests) and reused; a file lock keeps parallel
test workers from building the same thing twice.
"""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("PODCHECK_TEST_CACHE") or Path.home() / ".cache" / "podcheck-tests")
BASE_PYTHON = getattr(sys, "_base_executable", None) or sys.executable
TORCH_SPEC = "torch==2.13.0"


@contextmanager
def locked(name: str):
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(CACHE / f".{name}.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def cached(name: str, build: Callable[[Path], None]) -> Path:
    """CACHE/name, built by `build(tmpdir)` once and renamed into place (a crash leaves no half)."""
    final = CACHE / name
    if (final / ".ready").exists():
        return final
    with locked(name):
        if (final / ".ready").exists():
            return final
        if final.exists():
            shutil.rmtree(final)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=CACHE))
        build(tmp)
        (tmp / ".ready").write_text("ok\n")
        tmp.rename(final)
    return final


def _venv(path: Path, with_pip: bool = True) -> None:
    args = [BASE_PYTHON, "-m", "venv", str(path)] + ([] if with_pip else ["--without-pip"])
    subprocess.run(args, check=True)


def pip(python: Path | str, *args: str, target: Path | None = None, env: dict[str, str] | None = None) -> None:
    """pip install into `python`'s venv (or into `target` with the test runner's own pip), quietly;
    `env` is added to this process's environment."""
    cmd = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *args]
    if target is not None:
        cmd = [sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
               "--no-deps", "--target", str(target), *args]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    if done.returncode != 0:
        noise = "is ignored"
        err = "\n".join(ln for ln in done.stderr.splitlines() if noise not in ln)
        raise RuntimeError(f"pip install {' '.join(args)} failed:\n{err[-2000:]}")


def site_packages(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages"))


def torch_venv() -> Path:
    """A venv with the CPU build of torch 2.13.0: a pod interpreter."""
    def build(tmp: Path) -> None:
        _venv(tmp)
        pip(tmp / "bin" / "python", TORCH_SPEC)
    return cached("torch-venv-2.13.0", build) / "bin" / "python"


def rootfs() -> Path:
    """A Debian bookworm root filesystem (`debootstrap --variant=minbase`, ~200 MB, ~30 s once): an
    unpacked image for the chroot backend. Tests copy it with hard links (`cp -al`) and only add files."""
    def build(tmp: Path) -> None:
        done = subprocess.run(["debootstrap", "--variant=minbase", "bookworm", str(tmp / "root"),
                               "http://deb.debian.org/debian"], capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"debootstrap failed: {done.stderr[-2000:] or done.stdout[-2000:]}")
    return cached("rootfs-bookworm-minbase", build) / "root"


def layered_venv(dest: Path, *packages: str) -> Path:
    """A cheap venv in `dest` that sees the cached torch venv (a .pth file) plus `packages`."""
    _venv(dest, with_pip=False)
    sp = site_packages(dest)
    (sp / "podcheck-torch.pth").write_text(str(site_packages(torch_venv().parent.parent)) + "\n")
    if packages:
        pip(sys.executable, *packages, target=sp)
    return dest / "bin" / "python"


#: pandas 1.5.3's cp311 wheels are compiled against numpy 1.x: under numpy 2 `import pandas` fails.
PANDAS_NUMPY1_SPEC, NUMPY2_SPEC, NUMPY1_SPEC = "pandas==1.5.3", "numpy==2.2.6", "numpy==1.26.4"


def numpy_abi_wheelhouse() -> Path:
    """Wheels from the registry for a pod python whose numpy is not the one a compiled extension was
    built for: pandas 1.5.3 and its dependencies, numpy 2.2.6, and numpy 1.26.4 (the repair). Built once."""
    def build(tmp: Path) -> None:
        for wanted in ([PANDAS_NUMPY1_SPEC, NUMPY2_SPEC], ["--no-deps", NUMPY1_SPEC]):
            done = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                                   "-d", str(tmp), *wanted], capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"pip download {' '.join(wanted)} failed:\n{done.stderr[-2000:]}")
    return cached("numpy-abi-wheelhouse", build)


ACCELERATE_SPEC = "accelerate==1.15.0"


def accelerate_venv() -> Path:
    """A venv that sees the cached CPU-torch venv (a .pth file) plus real accelerate and its
    dependencies (pip counts the torch it sees as installed): `save_state`, `load_state` and
    `accelerate launch` as a kohya training uses them. Built once; its python."""
    def build(tmp: Path) -> None:
        _venv(tmp)
        (site_packages(tmp) / "podcheck-torch.pth").write_text(str(site_packages(torch_venv().parent.parent)) + "\n")
        pip(tmp / "bin" / "python", ACCELERATE_SPEC)
    return cached("accelerate-venv-1.15.0", build) / "bin" / "python"


def bare_venv(dest: Path) -> Path:
    """A venv with nothing in it (no torch)."""
    _venv(dest, with_pip=False)
    return dest / "bin" / "python"


def fake_python(dest: Path, body: str) -> Path:
    """An executable that stands in for a broken pod python (hangs, dies by a signal...)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text("#!/bin/sh\n" + body + "\n")
    dest.chmod(0o755)
    return dest


def _toml_str(text: str) -> str:
    """A TOML basic string (JSON's escapes, plus DEL, which TOML does not allow raw)."""
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_dumps(data: dict[str, dict[str, Any]]) -> str:
    """Enough TOML for podcheck.toml: tables of str, int, float, bool, list of str, table of str."""
    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, str):
            return _toml_str(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        if isinstance(v, dict):
            return "{" + ", ".join(f"{_toml_str(k)} = {value(x)}" for k, x in v.items()) + "}"
        raise TypeError(type(v))
    out = []
    for section, keys in data.items():
        out.append(f"[{section}]")
        out.extend(f"{k} = {value(v)}" for k, v in keys.items())
        out.append("")
    return "\n".join(out)


@dataclass
class Run:
    rc: int
    stdout: str
    stderr: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.stdout)

    def status(self, check_id: str) -> str:
        return self.result(check_id)["status"]

    def result(self, check_id: str) -> dict[str, Any]:
        return next(r for r in self.json["results"] if r["id"] == check_id)

    def statuses(self) -> dict[str, str]:
        return {r["id"]: r["status"] for r in self.json["results"]}


@dataclass
class SimPod:
    """A workspace and a podcheck.toml for it; `podcheck(...)` runs the real CLI against it."""

    root: Path
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def workspace(self) -> Path:
        return self.root / "workspace"

    @property
    def config_path(self) -> Path:
        return self.root / "podcheck.toml"

    @property
    def state_dir(self) -> Path:
        return Path(self.settings.get("pod", {}).get("state_dir", str(self.workspace / ".podcheck")))

    def configure(self, **sections: dict[str, Any]) -> "SimPod":
        """Merge settings into the config (`pod.configure(pod={"gpu": "absent"})`) and rewrite it."""
        for name, keys in sections.items():
            self.settings.setdefault(name, {}).update(keys)
        self.config_path.write_text(toml_dumps(self.settings))
        return self

    def live(self):
        """This pod as checks see it, in this process: a podcheck Pod on testinfra's local:// host."""
        import testinfra

        from podcheck import config
        from podcheck.host.pod import Pod
        return Pod(config.load(self.config_path, env={}), testinfra.get_host("local://"))

    def podcheck(self, *args: str, env: dict[str, str] | None = None, timeout: float = 300) -> Run:
        """Run the real `podcheck` CLI (a new process) against this pod."""
        full_env = {**os.environ, "PODCHECK_CONFIG": str(self.config_path), **self.env, **(env or {})}
        full_env.pop("PODCHECK_WORKSPACE", None)
        done = subprocess.run([sys.executable, "-m", "podcheck", *args], capture_output=True, text=True,
                              env=full_env, cwd=self.root, timeout=timeout)
        return Run(done.returncode, done.stdout, done.stderr)


def cpu_pod(root: Path, python: Path | str) -> SimPod:
    """A healthy CPU-only pod: workspace, pod python with CPU torch, no GPU, no sage expected."""
    pod = SimPod(root)
    pod.workspace.mkdir(parents=True, exist_ok=True)
    pod.configure(
        pod={"workspace": str(pod.workspace), "python": str(python), "gpu": "absent", "user": "alice",
             "probe_timeout": 60.0},
        torch={"cuda": "cpu", "vision_spec": "", "audio_spec": ""},  # the CPU torch venv has no companions
        attention={"sage": "off"},
    )
    return pod


def wait_for(predicate, timeout: float = 20.0, step: float = 0.05, what: str = "the condition"):
    """Poll `predicate` until it returns something truthy (returned); AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End a process a test started: SIGTERM, then SIGKILL after `grace` seconds."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


class Background:
    """Real `podcheck` commands a test runs in the background against SimPods (this process's
    environment, the pod's PODCHECK_CONFIG, then `env`; stderr piped, text); close() stops each."""

    def __init__(self, stdout: Any = subprocess.PIPE) -> None:
        self.stdout = stdout
        self.started: list[subprocess.Popen] = []

    def __call__(self, sim: SimPod, *args: str, env: dict | None = None) -> subprocess.Popen:
        full = {**os.environ, "PODCHECK_CONFIG": str(sim.config_path), **(env or {})}
        proc = subprocess.Popen([sys.executable, "-m", "podcheck", *args], env=full, cwd=sim.root,
                                stdout=self.stdout, stderr=subprocess.PIPE, text=True)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            stop(proc)


def path_without(*names: str, root: Path) -> str:
    """A PATH with every command of /usr/bin and /usr/sbin except `names` (a pod where they are gone)."""
    farm = root / f"bin-without-{'-'.join(names)}"
    farm.mkdir(parents=True, exist_ok=True)
    for folder in ("/usr/local/bin", "/usr/bin", "/usr/sbin", "/sbin", "/bin"):
        if not os.path.isdir(folder):
            continue
        for entry in os.listdir(folder):
            link = farm / entry
            if entry in names or link.exists() or link.is_symlink():
                continue
            link.symlink_to(os.path.join(folder, entry))
    return str(farm)


class Spawner:
    """Starts real processes in their own session and kills each one's whole group at close()."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def __call__(self, argv: list[str], **kw: Any) -> subprocess.Popen:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(argv, start_new_session=True, **kw)
        self.started.append(proc)
        return proc

    def close(self) -> None:
        import signal
        for proc in self.started:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()
