"""Repairs: the model (Repair, Outcome, Context) and the registry that the modules of repairs/ fill.

A repair is a class registered under its id (a contract), in the repairs/ module of its area::

    @register
    class Ffmpeg(Repair):
        id = "ffmpeg"
        description = "install ffmpeg with the system package manager"
        def inputs(self, ctx): return {"install": ctx.cfg.fix.ffmpeg_install}
        def commands(self, ctx): return [ctx.cfg.fix.ffmpeg_install]
        def apply(self, ctx): ...; return Outcome.changed("installed ffmpeg 5.1.9")

`apply` is idempotent: when there is nothing to do it returns `unchanged` without running an
installer. It reaches the pod only through `ctx.run` (recorded, logged) and the pod's own helpers
(podcheck.domain.comfyui, podcheck.syncloop...), a timeout on every command, so the same repair works on
local://, ssh:// and a chroot. Other helpers register more repairs the same way
(`training.resume` in repairs/training.py): every module of podcheck.repairs is imported.
"""
from __future__ import annotations

import shlex
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from podcheck.host.pod import Pod, Ran
from podcheck.results import CheckResult

#: The contract's repair ids, in the order ties are broken when planning (install order).
ORDER = ("ffmpeg", "venv", "torch", "comfyui", "sage", "isolation.unlink", "isolation.user_dirs",
         "comfyui.launch", "comfyui.relaunch", "sync.config", "sync.start", "caches.clear", "memory.free")
BLAST_RADII = ("safe", "restarts-service", "deletes-cache", "replaces-packages")
TOKEN_ENV = "PODCHECK_FIX_TOKEN"  # marks every command of one fixer, so a dead fixer's leftovers can be found


@dataclass
class Outcome:
    """What one repair did: changed | unchanged | failed | skipped, in one line."""

    status: str
    message: str

    @classmethod
    def changed(cls, message: str) -> "Outcome":
        return cls("changed", message)

    @classmethod
    def unchanged(cls, message: str) -> "Outcome":
        return cls("unchanged", message)

    @classmethod
    def failed(cls, message: str) -> "Outcome":
        return cls("failed", message)

    @classmethod
    def skipped(cls, message: str) -> "Outcome":
        return cls("skipped", message)


class Repair:
    """One repair. Subclasses set the class attributes and implement `apply` (and `commands`)."""

    id: ClassVar[str]
    description: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    slow: ClassVar[bool] = False
    blast: ClassVar[str] = "safe"
    #: needs this repair may run before, when they are left to the background (it adapts: see ctx.pending)
    may_precede: ClassVar[tuple[str, ...]] = ()

    def needed(self, cfg: Any) -> tuple[str, ...]:
        """The repairs that must run first, for this config."""
        return self.needs

    def inputs(self, ctx: "Context") -> dict[str, Any] | None:
        """What this repair installs from (cheap to read: no pip, no git). A change makes it due.
        None: nothing to remember; it runs only when one of its checks fails."""
        return None

    def commands(self, ctx: "Context") -> list[list[str]]:
        """The commands `apply` would run now, for `--dry-run` (reads only)."""
        return []

    def blocker(self, ctx: "Context") -> str | None:
        """Why this repair will fail whatever runs before it (a config value it needs is missing), told
        when the plan is made, before any slow repair runs; None when nothing is known to stop it."""
        return None

    def apply(self, ctx: "Context") -> Outcome:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<repair {self.id}>"


#: Every registered repair class by id; podcheck.fix.registry fills it by importing podcheck.repairs.
REGISTERED: dict[str, type[Repair]] = {}


def register(cls: type[Repair]) -> type[Repair]:
    """Class decorator: add a repair to the registry (ids are unique)."""
    for attr in ("id", "description"):
        if not getattr(cls, attr, None):
            raise TypeError(f"{cls.__name__}: a repair needs {attr}")
    if cls.blast not in BLAST_RADII:
        raise TypeError(f"{cls.id}: blast must be one of {', '.join(BLAST_RADII)}, got {cls.blast!r}")
    known = REGISTERED.get(cls.id)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise TypeError(f"repair id {cls.id!r} registered twice ({known.__qualname__}, {cls.__qualname__})")
    REGISTERED[cls.id] = cls
    return cls


def shown_command(argv: tuple[str, ...] | list[str]) -> str:
    """A command as one line for logs and reports: an inline `sh -c` script is shortened to its first
    line, and data handed to it (a file's new content) is shown by its size only."""
    words = [str(a) for a in argv]
    if len(words) > 2 and words[0] == "sh" and words[1] == "-c":
        script = words[2].strip().splitlines() or [""]
        data = [w if "\n" not in w and len(w) <= 200 else f"<{len(w.encode())} bytes>" for w in words[3:]]
        head = shlex.join(words[:2]) + " " + shlex.quote(script[0] + (" …" if len(script) > 1 else ""))
        return " ".join([head, *(shlex.quote(d) if not d.endswith(" bytes>") else d for d in data)])
    return shlex.join(words)


@dataclass
class Context:
    """What a repair sees: the pod, the check results before the fix, and a way to run commands.

    `pending` are repairs left to run later (in the background): a repair that may precede them
    adapts (comfyui.launch leaves out --use-sage-attention while sage is still pending).
    """

    pod: Pod
    before: dict[str, CheckResult] = field(default_factory=dict)
    pending: frozenset[str] = frozenset()
    token: str = ""
    marker: Any = None  # the repair's marker before this run (podcheck.fix.markers.Marker), or None
    log: Callable[[str], None] = lambda text: None
    commands: list[str] = field(default_factory=list)

    @property
    def cfg(self) -> Any:
        return self.pod.config

    def run(self, *argv: str, timeout: float | None = None, env: dict[str, str] | None = None,
            tagged: bool = True) -> Ran:
        """Run a command on the pod and keep it in the repair's record and the fix log.
        `tagged` adds the fixer's token to its environment; detached services are not tagged."""
        full_env = dict(env or {})
        if tagged and self.token:
            full_env[TOKEN_ENV] = self.token
        shown = shown_command(argv)
        self.commands.append(shown)
        started = time.monotonic()
        ran = self.pod.run(*argv, timeout=timeout, env=full_env or None)
        tail = "\n".join((ran.stdout + ran.stderr).strip().splitlines()[-15:])
        self.log(f"$ {shown}\n  -> rc {ran.rc} in {time.monotonic() - started:.1f} s" + (f"\n{tail}" if tail else ""))
        return ran

    def probe(self, *argv: str, timeout: float | None = None) -> Ran:
        """A read-only command (an existence test, a version query): not part of the record."""
        return self.pod.run(*argv, timeout=timeout)

    def failing(self, repair_id: str) -> list[CheckResult]:
        """The checks this repair fixes that failed before the fix."""
        return [r for r in self.before.values() if r.repair == repair_id and r.status in ("failed", "error")]

    def install_timeout(self) -> float:
        return float(self.cfg.fix.install_timeout)

    def quarantine(self, path: str) -> tuple[str | None, str]:
        """Move `path` (never delete it) to {state_dir}/quarantine/<timestamp>/<path>; (where, why not)."""
        stamp = time.strftime("%Y%m%d-%H%M%S")
        dest = f"{self.cfg.pod.state_dir}/quarantine/{stamp}/{path.lstrip('/')}"
        if self.probe("test", "-e", dest).ok or self.probe("test", "-L", dest).ok:
            dest = f"{dest}.{int(time.time() * 1000) % 100000}"
        made = self.run("mkdir", "-p", dest.rsplit("/", 1)[0])
        if not made.ok:
            return None, made.why()
        moved = self.run("mv", "-T", "--", path, dest, timeout=self.install_timeout())
        return (dest, "") if moved.ok else (None, moved.why())
