"""Repairs: the model (Repair, Outcome, Context) and the registry that the modules of repairs/ fill.

A repair is a class registered under its id (a contract), in the repairs/ module of its area::

    @register
    class Ffmpeg(Repair):
        id = "ffmpeg"
        description = "install ffmpeg with the system package manager"
        def inputs(self, ctx): return {"install": ctx.cfg.fix.ffmpeg_install}
        def apply(self, ctx): ...; return Outcome.changed("installed ffmpeg 5.1.9")

`apply` is idempotent: when there is nothing to do it returns `unchanged` without running an
installer. It changes the pod only through `ctx.run` and `ctx.do` (recorded, logged), or hands `ctx`
as the actor to a domain helper that changes it (podcheck.domain.syncloop_control.start,
podcheck.domain.resume); it reads through `ctx.probe` and the pod's read helpers, a timeout on every
command, so the same repair works on local://, ssh:// and a chroot.

`--dry-run` is check mode on the same code path (as ansible's): `apply` runs with a Context whose
`dry_run` is set, so `ctx.run`/`ctx.do` record what they would do and change nothing, while
`ctx.probe` still reads. The plan's commands are the record, so they cannot drift from `apply`.
Where a step needs what a skipped change would have made (a pid, a file), `apply` asks
`ctx.dry_run` and takes the success path. Other helpers register more repairs the same way
(`training.resume` in repairs/training.py): every module of podcheck.repairs is imported.
"""
from __future__ import annotations

import os
import shlex
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar

from podcheck import gates
from podcheck.host import stream
from podcheck.host.actor import planned_ran
from podcheck.host.pod import Pod, Ran
from podcheck.results import CheckResult

BLAST_RADII = ("safe", "restarts-service", "deletes-cache", "replaces-packages")
# The quarantine folder $2 under state_dir $1, made without following a link planted on the way
# (every part below state_dir is checked, then the made folder's real path is compared).
_QUARANTINE_DIR = r"""
root="$1"; dest="$2"; p="$root"; rest="${dest#"$root"/}"
IFS=/
for c in $rest; do
  p="$p/$c"
  if [ -L "$p" ]; then echo "refusing to quarantine into $p: it is a symlink podcheck did not make" >&2; exit 3; fi
done
mkdir -p -- "$dest" || exit 1
real_root=$(cd -P -- "$root" && pwd) && real=$(cd -P -- "$dest" && pwd) || exit 1
[ "$real" = "$real_root/$rest" ] || { echo "refusing to quarantine into $dest: it resolves to $real" >&2; exit 3; }
"""

#: Seconds between two "still running" lines of a command a repair runs.
HEARTBEAT_SECONDS = float(os.environ.get("PODCHECK_HEARTBEAT_SECONDS") or 15)
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
    """One repair. Subclasses set the class attributes and implement `apply`."""

    id: ClassVar[str]
    description: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    slow: ClassVar[bool] = False
    blast: ClassVar[str] = "safe"
    #: needs this repair may run before, when they are left to the background (it adapts: see ctx.pending)
    may_precede: ClassVar[tuple[str, ...]] = ()
    #: its place when ties are broken in planning (install order), and in listings: lower runs first
    order: ClassVar[int] = 1000
    #: config gates (podcheck.gates) that must be open, else it is skipped with the gate's reason
    when: ClassVar[tuple[str, ...]] = ()
    #: it (re)starts a service: `podcheck watch` runs it only for a service that ran before
    starts_service: ClassVar[bool] = False

    def needed(self, cfg: Any) -> tuple[str, ...]:
        """The repairs that must run first, for this config."""
        return self.needs

    def inputs(self, ctx: "Context") -> dict[str, Any] | None:
        """What this repair installs from (cheap to read: no pip, no git). A change makes it due.
        None: nothing to remember; it runs only when one of its checks fails."""
        return None

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
    try:
        gates.names(cls.when)
    except ValueError as exc:
        raise TypeError(f"{cls.id}: {exc}") from None
    if cls.blast not in BLAST_RADII:
        raise TypeError(f"{cls.id}: blast must be one of {', '.join(BLAST_RADII)}, got {cls.blast!r}")
    known = REGISTERED.get(cls.id)
    if known is not None and known.__qualname__ != cls.__qualname__:
        raise TypeError(f"repair id {cls.id!r} registered twice ({known.__qualname__}, {cls.__qualname__})")
    REGISTERED[cls.id] = cls
    return cls


def attempt(repair: Repair, ctx: "Context") -> Outcome:
    """The repair's `apply`, unless a config gate of it is closed (then skipped, with the gate's
    reason); a crash is a failed outcome (a bug in one repair must not stop the others)."""
    off = gates.closed(ctx.cfg, repair.when)
    if off:
        return Outcome.skipped(off)
    try:
        return repair.apply(ctx)
    except Exception as exc:
        return Outcome.failed(f"repair crashed: {type(exc).__name__}: {' '.join(str(exc).split())[:300]}")


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
    dry_run: bool = False  # check mode: run() and do() record, change nothing; probe() still reads
    #: told what command runs now ({"command", "elapsed_s", "last_line"}), and None when it ends
    progress: Callable[[dict[str, Any] | None], None] | None = None

    @property
    def cfg(self) -> Any:
        return self.pod.config

    def run(self, *argv: str, timeout: float | None = None, env: dict[str, str] | None = None,
            tagged: bool = True) -> Ran:
        """Run a command that changes the pod and keep it in the repair's record and the fix log (in a
        dry run: only record it, and answer success with no output).
        `tagged` adds the fixer's token to its environment; detached services are not tagged."""
        full_env = dict(env or {})
        if tagged and self.token:
            full_env[TOKEN_ENV] = self.token
        shown = shown_command(argv)
        self.commands.append(shown)
        if self.dry_run:
            return planned_ran(argv, timeout)
        started = time.monotonic()
        ran = self._watched(argv, shown, timeout, full_env or None, stream_output=tagged)
        tail = "\n".join((ran.stdout + ran.stderr).strip().splitlines()[-15:])
        self.log(f"$ {shown}\n  -> rc {ran.rc} in {time.monotonic() - started:.1f} s" + (f"\n{tail}" if tail else ""))
        return ran

    def do(self, shown: str, action: Callable[[], Any], planned: Any) -> Any:
        """A change that is no command (an HTTP POST): recorded as `shown`, made unless in a dry run
        (which returns `planned`)."""
        self.commands.append(shown)
        if self.dry_run:
            return planned
        self.log(f"$ {shown}")
        return action()

    def _watched(self, argv: tuple[str, ...], shown: str, timeout: float | None, env: dict[str, str] | None,
                 stream_output: bool) -> Ran:
        """pod.run, telling `progress` what runs: the command at once, then every HEARTBEAT_SECONDS its
        elapsed time and, for a long command on a local pod (an install: its limit is above
        [pod] command_timeout), the last line of its output; then its end. Detached services
        (`stream_output` False) keep pod.run: their daemons must not share our pipes."""
        if self.progress is None:
            return self.pod.run(*argv, timeout=timeout, env=env)
        started, last, done = time.monotonic(), [""], threading.Event()
        self.progress({"command": shown, "elapsed_s": 0.0, "last_line": ""})

        def beat() -> None:
            while not done.wait(HEARTBEAT_SECONDS):
                self.progress({"command": shown, "elapsed_s": round(time.monotonic() - started, 1),
                               "last_line": last[0][-200:]})

        heart = threading.Thread(target=beat, name="podcheck-heartbeat", daemon=True)
        heart.start()
        try:
            limit = float(timeout if timeout is not None else self.cfg.pod.command_timeout)
            if self.pod.is_local and stream_output and limit > float(self.cfg.pod.command_timeout):
                ran = stream.run(list(argv), limit, env, lambda line: last.__setitem__(0, line))
            else:
                ran = self.pod.run(*argv, timeout=timeout, env=env)
        finally:
            done.set()
            heart.join(1)
        self.progress(None)
        return ran

    def probe(self, *argv: str, timeout: float | None = None, env: dict[str, str] | None = None) -> Ran:
        """A read-only command (an existence test, a version query): not part of the record; it runs
        in a dry run too."""
        return self.pod.run(*argv, timeout=timeout, env=env)

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
        made = self.run("sh", "-c", _QUARANTINE_DIR, "sh", self.cfg.pod.state_dir, dest.rsplit("/", 1)[0])
        if not made.ok:
            return None, (made.stderr.strip().splitlines() or [made.why()])[-1]
        moved = self.run("mv", "-T", "--", path, dest, timeout=self.install_timeout())
        return (dest, "") if moved.ok else (None, moved.why())
