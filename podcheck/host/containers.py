"""Container targets: `--hosts podman://REF` and `docker://REF`.

REF names a running container, checked as it is through testinfra's podman/docker backend, or an
image. For an image podcheck starts a throwaway container (`--rm`, `--network none`, `sleep` as
its entrypoint, labelled LABEL) and removes it at the end. It is removed on a normal end, on
SIGTERM/SIGINT (then podcheck dies by that signal), by a watchdog process when podcheck is killed
outright (kill -9), and, if the watchdog died too, by the next container run on this machine. In
the worst case its own `sleep` ends it after LIFETIME_S and `--rm` removes it.
"""
from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
from dataclasses import dataclass, field

SCHEMES = ("podman", "docker")
LABEL = "podcheck.throwaway"
OWNER_LABEL = "podcheck.owner"
LIFETIME_S = 3600  # an orphaned throwaway container stops itself after this
ENGINE_TIMEOUT_S = 60.0  # every engine command runs under this limit

CONF = "/etc/containers/containers.conf"
INSTALL = {
    "podman": "podman is not installed: apt-get install podman runc, and set runtime = \"runc\" in "
              f"{CONF} (see the README, Image validation)",
    "docker": "no docker CLI on PATH: install docker, or podman-docker to run docker:// through podman",
}
_MISSING = re.compile(r"no such (image|object|container)|image not known|not found: manifest unknown", re.IGNORECASE)


class ContainerError(RuntimeError):
    """The container target cannot be used; the message says what to install or configure."""


def parse(spec: str) -> Container | None:
    """The Container of a `podman://REF` or `docker://REF` spec, None for any other spec."""
    scheme, sep, ref = spec.partition("://")
    if not sep or scheme not in SCHEMES:
        return None
    user = None
    head, at, tail = ref.partition("@")
    if at and head and "/" not in head and ":" not in head and not tail.startswith("sha256:"):
        user, ref = head, tail  # podman://USER@REF, as testinfra reads it
    return Container(scheme, ref, user)


@dataclass
class Container:
    """One container target: resolved (and, for an image, started) on first use."""

    engine: str
    ref: str
    user: str | None = None
    name: str | None = None  # the container testinfra execs into, once opened
    throwaway: bool = False
    _binary: str | None = field(default=None, repr=False)
    _watchdog: subprocess.Popen | None = field(default=None, repr=False)

    @property
    def spec(self) -> str:
        return f"{self.engine}://{self.ref}"

    def testinfra_spec(self) -> str:
        """The spec testinfra's backend execs into (`podman://NAME`); opens the target first."""
        if self.name is None:
            self.open()
        return f"{self.engine}://{self.user + '@' if self.user else ''}{self.name}"

    def open(self) -> None:
        """Find REF: a running container is used as it is; an image gets a throwaway container."""
        if not self.ref:
            raise ContainerError(f"{self.engine}:// needs a container or image name ({self.engine}://IMAGE)")
        self._binary = shutil.which(self.engine)
        if not self._binary:
            raise ContainerError(INSTALL[self.engine])
        reap(self._binary)
        running = self._engine("container", "inspect", "--format", "{{.State.Running}}", self.ref)
        if running.returncode == 0:
            if running.stdout.strip().lower() != "true":
                raise ContainerError(f"container {self.ref} is not running: start it ({self.engine} start "
                                     f"{self.ref}), or name its image to check a fresh container")
            self.name = self.ref
            return
        image = self._engine("image", "inspect", "--format", "{{.Id}}", self.ref)
        if image.returncode != 0:
            why = _last_line(image.stderr or running.stderr)
            if _MISSING.search(why) or _MISSING.search(_last_line(running.stderr)):
                raise ContainerError(f"no container or image {self.ref} in {self.engine}: build it "
                                     f"({self.engine} build -t {self.ref} .) or pull it first")
            raise ContainerError(f"{self.engine} cannot answer: {why}{_engine_hint(self.engine, why)}")
        self._start()

    def _start(self) -> None:
        name = f"podcheck-{os.getpid()}-{secrets.token_hex(3)}"
        # Guards first, so a kill while the container is being created still removes it. The
        # watchdog reads until podcheck's end of its stdin pipe closes (podcheck died, however),
        # then removes the container; in its own session, a signal to podcheck's group misses it.
        self.name, self.throwaway = name, True
        _OPEN[name] = self
        _install_handlers()
        self._watchdog = subprocess.Popen(
            ["sh", "-c", 'read _ignored; exec "$0" rm -f "$1"', self._binary or self.engine, name],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        user = ["--user", self.user] if self.user else []
        started = self._engine(
            "run", "-d", "--rm", "--network", "none", "--pull", "never", "--stop-signal", "KILL",
            "--name", name, "--label", f"{LABEL}=1", "--label", f"{OWNER_LABEL}={owner()}",
            *user, "--entrypoint", "sleep", self.ref, str(LIFETIME_S))
        if started.returncode != 0:
            self.close()  # a container that was created but could not start
            self.name = None
            why = _last_line(started.stderr or started.stdout)
            raise ContainerError(f"{self.engine} cannot start a container from {self.ref}: {why}"
                                 f"{_engine_hint(self.engine, why)}")

    def refuse_repairs(self) -> None:
        """ContainerError for an image: repairs would land in the throwaway container and be lost."""
        if self.name is None:
            self.open()
        if self.throwaway:
            raise ContainerError(f"--fix cannot repair an image ({self.spec}): the repairs would change only a "
                                 "throwaway container; fix the Containerfile and rebuild")

    def close(self) -> None:
        """Remove the throwaway container (a running container of the user's is left alone)."""
        if not self.throwaway or self.name is None:
            return
        name, self.throwaway = self.name, False
        _OPEN.pop(name, None)
        self._remove(name)
        if self._watchdog is not None:
            self._watchdog.kill()
            self._watchdog.wait()
            self._watchdog = None

    def _remove(self, name: str) -> None:
        try:
            self._engine("rm", "-f", name)
        except ContainerError:
            pass  # the watchdog, or the next run's reap, removes it

    def _engine(self, *args: str) -> subprocess.CompletedProcess:
        return _run([self._binary or self.engine, *args])


def _run(argv: list[str], timeout: float = ENGINE_TIMEOUT_S) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ContainerError(f"`{os.path.basename(argv[0])} {argv[1]}` did not answer in {timeout:g} s") from None
    except OSError as exc:
        raise ContainerError(f"cannot run {argv[0]}: {exc.strerror or exc}") from None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else "no output"


def _engine_hint(engine: str, why: str) -> str:
    """What to install or configure for a failure the engine reported."""
    low = why.lower()
    if "rlimit" in low:
        return (f'; lower the containers\' limits: default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"] '
                f"under [containers] in {CONF}")
    if "hybrid mode" in low or "crun" in low:
        return f'; use runc: apt-get install runc, and runtime = "runc" under [engine] in {CONF}'
    if "oci runtime" in low and "not found" in low:
        return f'; install an OCI runtime: apt-get install runc, and runtime = "runc" under [engine] in {CONF}'
    if "docker daemon" in low:
        return "; start dockerd, or install podman-docker to run docker:// through podman"
    if "executable file" in low or "no such file" in low:
        return "; podcheck needs `sleep` and /bin/sh in the image"
    return ""


# --- owners, leftovers, signals ------------------------------------------------------------------

def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as fh:
            return fh.read().strip()
    except OSError:
        return "unknown"


def _start_ticks(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def owner(pid: int | None = None) -> str:
    """BOOT_ID/PID/START: the podcheck process a throwaway container belongs to."""
    pid = pid or os.getpid()
    return f"{_boot_id()}/{pid}/{_start_ticks(pid)}"


def owner_gone(label: str) -> bool:
    """True only when the owner ran on this machine since its last boot and has ended."""
    parts = label.split("/")
    if len(parts) != 3 or parts[0] != _boot_id() or not parts[1].isdigit():
        return False  # another machine's (a shared engine) or not ours: its own lifetime ends it
    return _start_ticks(int(parts[1])) != parts[2]


def reap(binary: str) -> list[str]:
    """Remove throwaway containers whose podcheck ended without removing them; their names."""
    listed = _run([binary, "ps", "-a", "--filter", f"label={LABEL}", "--format", "{{.Names}}"])
    names = [n.strip() for n in listed.stdout.split() if n.strip()] if listed.returncode == 0 else []
    if not names:
        return []
    labels = _run([binary, "inspect", "--format", f'{{{{index .Config.Labels "{OWNER_LABEL}"}}}}', *names])
    owners = labels.stdout.splitlines() if labels.returncode == 0 else []
    gone = [name for name, label in zip(names, owners) if name not in _OPEN and owner_gone(label.strip())]
    for name in gone:
        _run([binary, "rm", "-f", name])
        sys.stderr.write(f"podcheck: removed container {name}, left behind by a podcheck run that was killed\n")
    return gone


_OPEN: dict[str, Container] = {}
_HANDLED: dict[int, object] = {}


def close_all() -> None:
    for container in list(_OPEN.values()):
        container.close()


def _on_signal(signum: int, frame: object) -> None:
    """Remove the throwaway containers, then die by the signal as if there were no handler."""
    close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)


def _install_handlers() -> None:
    if _HANDLED:
        return
    atexit.register(close_all)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        try:
            _HANDLED[signum] = signal.signal(signum, _on_signal)
        except ValueError:  # not the main thread: the watchdog still removes the container
            _HANDLED[signum] = None
