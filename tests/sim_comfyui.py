"""ComfyUI on simulated pods: a checkout laid from the stand-in (tests/standins/comfyui), real stand-in
processes on free ports (own process group, stopped at teardown), per-user folders, and a pod python
with the real sageattention 1.0.6 (+ triton) so `--use-sage-attention` imports as on a pod.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import podsim
import pytest

from podcheck.domain import comfyui

STANDIN = Path(__file__).resolve().parent / "standins" / "comfyui"
SAGE_SPECS = ("sageattention==1.0.6", "triton==3.9.0")
#: Targets that reach the same machine: locally, and through commands only (chroot of /, which needs root).
HOSTS = ("local://", "chroot:///") if os.geteuid() == 0 else ("local://",)
#: The per-user folders a pod has: {workspace}/<kind>/<user>.
USER_KINDS = ("output", "input", "workflows", "temp", "user")


def sage_python() -> Path:
    """A pod python that sees the CPU torch venv plus the real sageattention 1.0.6 and triton: the
    import works on CPU (the kernels would need a GPU). Built once, like the torch venv."""
    def build(tmp: Path) -> None:
        podsim.layered_venv(tmp, *SAGE_SPECS)
    return podsim.cached("sage-venv-1.0.6", build) / "bin" / "python"


def lay_comfyui(dest: Path, *, sage_flag: bool = True, requirements: tuple[str, ...] = ()) -> Path:
    """A ComfyUI checkout at `dest` from the stand-in. `sage_flag=False`: an older ComfyUI whose
    cli_args.py has no --use-sage-attention; `requirements`: lines appended to requirements.txt."""
    shutil.copytree(STANDIN, dest, ignore=shutil.ignore_patterns("__pycache__"))
    if not sage_flag:
        cli_args = dest / "comfy" / "cli_args.py"
        cli_args.write_text("".join(line for line in cli_args.read_text().splitlines(keepends=True)
                                    if "--use-sage-attention" not in line))
    if requirements:
        with open(dest / "requirements.txt", "a") as fh:
            fh.write("".join(f"{line}\n" for line in requirements))
    return dest


def make_user_dirs(workspace: Path, *users: str, kinds: tuple[str, ...] = USER_KINDS) -> None:
    for user in users:
        for kind in kinds:
            (workspace / kind / user).mkdir(parents=True, exist_ok=True)


def user_flags(workspace: Path, user: str) -> list[str]:
    """The options that give a ComfyUI its own folders and database for `user` (what comfyui.launch_flags
    asks of a ComfyUI that has --database-url, as the stand-in has)."""
    return comfyui.user_options(str(workspace), user) + [comfyui.DATABASE_FLAG,
                                                         comfyui.database_url(str(workspace), user)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Comfy:
    """One stand-in process: started through `sh -c 'echo banner; exec python main.py ...'`, so the pid
    of the shell is ComfyUI's pid and the banner the comfyui.launch repair writes precedes its lines."""

    process: subprocess.Popen
    port: int
    log: Path
    argv: list[str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
                try:
                    os.killpg(self.process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.process.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        self.process.wait(5)


@dataclass
class Launcher:
    """Starts stand-in ComfyUIs and stops every one of them at teardown."""

    started: list[Comfy] = field(default_factory=list)

    def start(self, comfyui_dir: Path, *flags: str, python: Path | str, log: Path, port: int | None = None,
              env: dict[str, str] | None = None, banner: bool = True, script: str = "main.py",
              cwd: Path | None = None, wait: str = "http", timeout: float = 60) -> Comfy:
        """Run `python script --listen 127.0.0.1 --port PORT *flags` in `cwd` (default comfyui_dir), its
        output appended to `log`; wait until it answers HTTP ("http"), prints its GUI line ("log"),
        is python, no longer the shell before it ("exec"), exits ("exit") or not at all (None)."""
        port = port or free_port()
        argv = [str(python), script, "--listen", "127.0.0.1", "--port", str(port), *flags]
        lead = 'echo "[podcheck] ComfyUI launch pid=$$"; ' if banner else ""
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "ab") as out:
            process = subprocess.Popen(["sh", "-c", lead + 'exec "$@"', "sh", *argv], cwd=cwd or comfyui_dir,
                                       stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env={**os.environ, **(env or {})})
        comfy = Comfy(process, port, log, argv)
        self.started.append(comfy)
        if wait:
            self._wait(comfy, wait, timeout)
        return comfy

    def _wait(self, comfy: Comfy, until: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            exited = comfy.process.poll() is not None
            if until == "exit" and exited:
                return
            if exited:
                raise RuntimeError(f"stand-in exited {comfy.process.returncode}:\n{comfy.log.read_text()[-2000:]}")
            if until == "log" and f":{comfy.port}" in comfy.log.read_text():
                return
            if until == "exec" and _program(comfy.pid) not in ("sh", ""):
                return
            if until == "http" and _answers(comfy.port):
                return
            time.sleep(0.05)
        raise RuntimeError(f"stand-in not {until} after {timeout} s:\n{comfy.log.read_text()[-2000:]}")

    def stop_all(self) -> None:
        for comfy in reversed(self.started):
            comfy.stop()


def _program(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode()
    except OSError:
        return ""


def _answers(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=1) as resp:
            return resp.status == 200
    except OSError:
        return False


@pytest.fixture
def launcher():
    """Start stand-in ComfyUIs; every one is stopped (process group) at teardown."""
    runner = Launcher()
    yield runner
    runner.stop_all()


@pytest.fixture(scope="session")
def sage_py():
    return sage_python()


def comfy_pod(root: Path, python: Path | str, *, users: tuple[str, ...] = ("alice",), sage: str = "required",
              sage_flag: bool = True, requirements: tuple[str, ...] = ()) -> podsim.SimPod:
    """A CPU pod with a ComfyUI checkout, per-user folders and a config for it (log in state_dir,
    http_timeout 1 s); sage "required" needs a python with sageattention (`sage_python()`)."""
    pod = podsim.cpu_pod(root, python)
    lay_comfyui(pod.workspace / "ComfyUI", sage_flag=sage_flag, requirements=requirements)
    make_user_dirs(pod.workspace, *users)
    pod.configure(pod={"user": users[0] if users else ""}, attention={"sage": sage},
                  comfyui={"http_timeout": 1.0, "listen": "127.0.0.1"})  # no pod proxy here (comfyui.listen)
    return pod


def comfy_log(pod: podsim.SimPod) -> Path:
    """Where the config puts ComfyUI's log (the default: {state_dir}/comfyui.log)."""
    return pod.state_dir / "comfyui.log"
