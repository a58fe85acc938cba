"""`podcheck watch`: a foreground loop for a process supervisor or `nohup`.

Every `interval` it re-runs the selected checks; for a failed check whose repair is one of the
unattended ones (`[watch] repairs`) it runs that repair and re-checks. Per check at most
`max_attempts_per_hour` attempts, each after a pause that doubles (`backoff_seconds`, 2x, 4x, ...),
then "giving up on <id> until <time>" while it keeps watching. Every action is one JSON line in
`[watch] log`. One watch per pod: a locked pidfile in state_dir; a second watch says who runs and
exits. SIGTERM / SIGINT end it within 2 s: a check run is abandoned (checks only read), but a
repair runs in its own process and session, so stopping never leaves one half done: it finishes
on its own and writes its outcome to the log.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

from podcheck import config as config_mod
from podcheck import runner
from podcheck.config import Config
from podcheck.facts import ProbeCache
from podcheck.fix import fixer
from podcheck.fix.markers import Markers
from podcheck.host.pod import Pod
from podcheck.reports.redact import Redactor
from podcheck.results import RepairResult, Report
from podcheck.runner import RunError

FAILING = ("failed", "error")
#: Repairs that (re)start a service: watch runs them only for a service that ran before (this watch
#: saw its check pass, or podcheck started it: the repair has a marker). It restarts a ComfyUI that
#: died; it does not start one that nobody started.
RESTARTS = {"comfyui.launch"}
LOG_LIMIT = 5 * 1024 * 1024  # then watch.log moves to watch.log.1
HOUR = 3600.0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


@dataclass
class Settings:
    """What one watch does: `[watch]` of the config, overridden by the command line."""

    interval: float
    select: list[str]
    repairs: set[str]
    max_attempts: int
    backoff: float
    repair_timeout: float
    log: Path
    pidfile: Path

    @classmethod
    def from_config(cls, cfg: Config, interval: float | None = None, select: list[str] | None = None) -> "Settings":
        w = cfg.watch
        host = socket.gethostname()
        interval = float(interval if interval is not None else w.interval_seconds)
        if interval <= 0:
            raise CannotStart(f"the watch interval must be more than 0 s, got {interval:g}")
        return cls(interval=interval,
                   select=list(select or w.select), repairs=set(w.repairs),
                   max_attempts=int(w.max_attempts_per_hour), backoff=float(w.backoff_seconds),
                   repair_timeout=float(w.repair_timeout_seconds), log=Path(w.log),
                   pidfile=Path(cfg.pod.state_dir) / f"watch-{host}.pid")


# --- attempts: per check, a cap per rolling hour and a growing pause ---------------------------------

@dataclass
class _Attempts:
    times: list[float] = field(default_factory=list)
    streak: int = 0            # attempts since the check last passed
    not_before: float = 0.0
    gave_up_until: float = 0.0  # the give-up that was last logged


class Limiter:
    """Decides whether a failed check may have its repair now: `verdict(id, now)` is ("go", now),
    ("wait", not_before) or ("give_up", until)."""

    def __init__(self, per_hour: int, backoff: float):
        self.per_hour, self.backoff = per_hour, backoff
        self._by_check: dict[str, _Attempts] = {}

    def _get(self, check_id: str, now: float) -> _Attempts:
        a = self._by_check.setdefault(check_id, _Attempts())
        a.times = [t for t in a.times if now - t < HOUR]
        return a

    def verdict(self, check_id: str, now: float) -> tuple[str, float]:
        a = self._get(check_id, now)
        if len(a.times) >= self.per_hour:
            return "give_up", a.times[0] + HOUR
        if now < a.not_before:
            return "wait", a.not_before
        return "go", now

    def attempted(self, check_id: str, now: float) -> float:
        """Record an attempt; the earliest time of the next one."""
        a = self._get(check_id, now)
        a.times.append(now)
        a.streak += 1
        a.not_before = now + self.backoff * 2 ** (a.streak - 1)
        return a.not_before

    def count(self, check_id: str, now: float) -> int:
        """Attempts in the last hour."""
        return len(self._get(check_id, now).times)

    def passed(self, check_id: str) -> None:
        a = self._by_check.get(check_id)
        if a:
            a.streak, a.not_before = 0, 0.0

    def first_give_up(self, check_id: str, until: float) -> bool:
        """True once per give-up period (so the log says it once)."""
        a = self._by_check[check_id]
        if a.gave_up_until == until:
            return False
        a.gave_up_until = until
        return True


# --- watch.log -------------------------------------------------------------------------------------

class Log:
    """watch.log: one JSON object per line, appended in one write; secrets redacted."""

    def __init__(self, path: Path, redactor: Any = None):
        self.path, self.host = path, socket.gethostname()
        self.redactor = redactor

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        entry = {"time": iso(time.time()), "host": self.host, "event": event,
                 **{k: v for k, v in fields.items() if v is not None}}
        if self.redactor is not None:
            entry = self.redactor.data(entry)
        line = json.dumps(entry) + "\n"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            if self.path.stat().st_size > LOG_LIMIT:
                os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        except FileNotFoundError:
            pass
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)
        return entry


def redactor_for(cfg: Config):
    """The reports layer's Redactor, taught the secret environment variables and the values in the
    pod's rclone config, so they are removed wherever they show up."""

    redactor = Redactor.from_env(os.environ)
    try:
        redactor.learn_config(Path(cfg.sync.rclone_config).read_text(errors="replace"))
    except OSError:
        pass
    return redactor


def read_log(path: Path, last: int = 200) -> list[dict[str, Any]]:
    """The last entries of a watch.log (torn or foreign lines skipped)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 256 * 1024))
            lines = fh.read().decode(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines[-last:]:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


# --- one watch per pod ------------------------------------------------------------------------------

class CannotStart(Exception):
    """A long-running mode cannot start (bad setting, pod already watched, port taken): one line."""


class AlreadyRunning(CannotStart):
    """Another watch holds this pod's pidfile; the message says who."""


@contextmanager
def pidfile(path: Path) -> Iterator[None]:
    """Hold `path` (flock) for the life of this watch; it names our pid. A dead holder's lock is gone
    with its process, so a stale pidfile never blocks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise AlreadyRunning(_holder(path)) from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                 "started": iso(time.time())}).encode() + b"\n")
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays, naming the last watch


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text())
        who = f"pid {info['pid']} since {info['started']}"
    except (OSError, ValueError, KeyError, TypeError):
        who = "another process"
    return f"podcheck watch already runs on this pod ({who}; pidfile {path}): stop it first"


# --- checks and repairs -----------------------------------------------------------------------------

class Engine:
    """How watch runs checks (in this process) and repairs (each in its own process and session)."""

    def __init__(self, cfg: Config, settings: Settings):

        self.cfg, self.settings = cfg, settings
        self.running: tuple[subprocess.Popen, str, list[str]] | None = None  # a repair that outlived its wait
        self.probe_cache = ProbeCache(cfg.pod.probe_reuse_seconds)

    def check(self, select: list[str]) -> Report:
        return runner.run(self.cfg, runner.Target(), profile="runtime", select=select, probe_cache=self.probe_cache)

    def repair(self, repair_id: str, checks: list[str], stopping: Callable[[], bool]) -> RepairResult | None:
        """Run one repair to its end; None when watch stops (or the wait times out) first."""
        if self.running is not None:
            return RepairResult(repair_id, "skipped", f"{self.running[1]} (pid {self.running[0].pid}) is still running")
        if stopping():
            return None
        argv = [sys.executable, "-m", "podcheck.services.watch", "--repair", repair_id, "--log", str(self.settings.log),
                *[a for c in checks for a in ("--check", c)]]
        if self.cfg.source:
            argv += ["--config", self.cfg.source]
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + self.settings.repair_timeout
        while proc.poll() is None:
            if stopping() or time.monotonic() > deadline:
                self.running = (proc, repair_id, checks)
                return None
            time.sleep(0.05)
        return _result(proc, repair_id)

    def finished(self) -> tuple[RepairResult, list[str]] | None:
        """The result of a repair that outlived its wait, once it has ended."""
        if self.running is None or self.running[0].poll() is None:
            return None
        proc, repair_id, checks = self.running
        self.running = None
        return _result(proc, repair_id), checks

    def started_before(self, repair_id: str) -> bool:
        """Whether podcheck ran this repair successfully before (the fix engine keeps a marker)."""
        import testinfra


        return repair_id in Markers(Pod(self.cfg, testinfra.get_host("local://"))).load()

    def running_pid(self) -> int | None:
        return self.running[0].pid if self.running and self.running[0].poll() is None else None


def _result(proc: subprocess.Popen, repair_id: str) -> RepairResult:
    try:
        data = json.loads(proc.stdout.read() or b"{}")
        return RepairResult(data["id"], data["status"], data.get("message", ""), data.get("commands", []),
                            data.get("duration_s", 0.0))
    except (ValueError, KeyError, TypeError):
        return RepairResult(repair_id, "failed", f"repair process exited {proc.returncode} without a result")
    finally:
        proc.stdout.close()


def run_repair(cfg: Config, repair_id: str) -> RepairResult:
    """Run one registered repair on the local pod, under the fix lock (the body of the repair process)."""
    return fixer.run_one(cfg, repair_id)


# --- the loop ---------------------------------------------------------------------------------------

class Stop(KeyboardInterrupt):
    """Raised by the signal handler outside repairs; pytest treats it as an interrupt."""


class Watch:
    def __init__(self, cfg: Config, settings: Settings, engine: Any = None, log: Log | None = None):
        self.cfg, self.settings = cfg, settings
        self.engine = engine or Engine(cfg, settings)
        self.log = log or Log(settings.log, redactor_for(cfg))
        self.limiter = Limiter(settings.max_attempts, settings.backoff)
        self.last: dict[str, str] = {}
        self.ever_passed: set[str] = set()
        self.not_restarted: set[str] = set()
        self.last_error: str | None = None
        self.stopping = False
        self.signal_name: str | None = None
        self._in_repair = False

    # signals: outside a repair, interrupt whatever runs; during one, only note it
    def _on_signal(self, signum: int, frame: Any) -> None:
        first = not self.stopping
        self.stopping = True
        self.signal_name = signal.Signals(signum).name
        if first and not self._in_repair:
            raise Stop()

    def run(self) -> int:
        """Watch until SIGTERM/SIGINT; 0 on a clean stop."""
        with pidfile(self.settings.pidfile):
            old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
            try:
                self.log.write("start", pid=os.getpid(), interval=self.settings.interval,
                               select=self.settings.select, repairs=sorted(self.settings.repairs))
                while not self.stopping:
                    started = time.monotonic()
                    try:
                        self.cycle()
                    except Exception as exc:  # a broken round (a bug, a full disk) must not end the watch
                        self._complain(f"round failed: {type(exc).__name__}: {exc}")
                    if not self.stopping:
                        time.sleep(max(0.0, self.settings.interval - (time.monotonic() - started)))
            except Stop:
                pass
            finally:
                self._in_repair = True  # no more interruptions while we write the last line
                still = self.engine.running_pid()
                self.log.write("stop", signal=self.signal_name, repair_running=still,
                               message=f"repair pid {still} finishes on its own and logs its outcome" if still else None)
                for s, handler in old.items():
                    signal.signal(s, handler)
        return 0

    def _complain(self, message: str) -> None:
        print(f"podcheck watch: {message}", file=sys.stderr, flush=True)
        try:
            self.log.write("error", message=message)
        except OSError:
            pass

    def cycle(self) -> None:
        """One round: check, repair what may be repaired, re-check what was repaired."""
        late = self.engine.finished()
        if late:
            self.log.write("repair", check=late[1], repair=late[0].id, outcome=late[0].status,
                           message=late[0].message, late=True)
        report = self._check(self.settings.select)
        if report is None:
            return
        now = time.time()
        due: dict[str, list[str]] = {}
        for r in report.results:
            before = self.last.get(r.id)
            self.last[r.id] = r.status
            if r.status not in FAILING:
                if r.status == "passed":
                    self.ever_passed.add(r.id)
                if before in FAILING:
                    self.log.write("check", check=r.id, result=r.status, message=r.message or "passes again")
                self.limiter.passed(r.id)
                continue
            if before != r.status:
                self.log.write("check", check=r.id, result=r.status, message=r.message, repair=r.repair)
            if not r.repair or r.repair not in self.settings.repairs:
                continue
            if r.repair in RESTARTS and r.id not in self.ever_passed and not self.engine.started_before(r.repair):
                if r.id not in self.not_restarted:
                    self.not_restarted.add(r.id)
                    self.log.write("skip", check=r.id, repair=r.repair,
                                   message=f"not running {r.repair}: this service was not running before "
                                           "(watch restarts what died; start it with `podcheck --fix`)")
                continue
            verdict, when = self.limiter.verdict(r.id, now)
            if verdict == "give_up":
                if self.limiter.first_give_up(r.id, when):
                    self.log.write("give_up", check=r.id, repair=r.repair, until=iso(when),
                                   message=f"giving up on {r.id} until {iso(when)}: {self.settings.max_attempts} "
                                           f"attempts of {r.repair} in the last hour did not fix it")
            elif verdict == "go":
                due.setdefault(r.repair, []).append(r.id)
        for repair_id, checks in due.items():
            if self.stopping:
                return
            self._repair(repair_id, checks)

    def _check(self, select: list[str]) -> Report | None:
        try:
            report = self.engine.check(select)
        except RunError as exc:
            if self.stopping:
                raise Stop() from None
            if str(exc) != self.last_error:
                self.log.write("error", message=f"no verdict: {exc}")
            self.last_error = str(exc)
            return None
        if self.stopping:
            raise Stop()
        self.last_error = None
        return report

    def _repair(self, repair_id: str, checks: list[str]) -> None:
        now = time.time()
        next_at = [self.limiter.attempted(c, now) for c in checks]
        self._in_repair = True
        try:
            result = self.engine.repair(repair_id, checks, lambda: self.stopping)
        finally:
            self._in_repair = False
        if result is None:
            if self.stopping:
                raise Stop()
            self.log.write("repair", check=checks, repair=repair_id, outcome="running",
                           message=f"{repair_id} is still running after {self.settings.repair_timeout:g} s; "
                                   "watch goes on and will not start it again until it ends")
            return
        self.log.write("repair", check=checks, repair=repair_id, outcome=result.status, message=result.message,
                       attempt=self.limiter.count(checks[0], now), of=self.settings.max_attempts,
                       next_attempt_after=iso(min(next_at)), wait_s=round(min(next_at) - now, 3))
        report = self._check(checks)
        for r in report.results if report else []:
            if r.id not in checks:
                continue
            self.last[r.id] = r.status
            if r.status in FAILING:
                self.log.write("recheck", check=r.id, result=r.status, repair=repair_id, message=r.message)
            else:
                self.limiter.passed(r.id)
                self.log.write("recheck", check=r.id, result=r.status, repair=repair_id,
                               message=f"repaired by {repair_id}")


def main(cfg: Config, interval: float | None = None, select: list[str] | None = None) -> int:
    """`podcheck watch`: run until stopped; AlreadyRunning when this pod has a watch."""
    settings = Settings.from_config(cfg, interval, select)
    return Watch(cfg, settings).run()


# --- the repair process: python -m podcheck.services.watch --repair ID ... -----------------------------------

def _repair_process(argv: list[str]) -> int:
    import argparse


    parser = argparse.ArgumentParser(prog="podcheck.services.watch")
    parser.add_argument("--repair", required=True)
    parser.add_argument("--check", action="append", default=[])
    parser.add_argument("--config")
    parser.add_argument("--log", required=True)
    args = parser.parse_args(argv)
    cfg = config_mod.load(args.config)
    log = Log(Path(args.log), redactor_for(cfg))
    started = time.monotonic()
    try:
        result = run_repair(cfg, args.repair)
    except Exception as exc:  # a broken repair is an outcome, not a crash of the loop
        result = RepairResult(args.repair, "failed", f"{type(exc).__name__}: {exc}")
    result.duration_s = result.duration_s or time.monotonic() - started
    try:
        sys.stdout.write(json.dumps(result.as_dict()))
        sys.stdout.flush()
    except BrokenPipeError:  # watch stopped meanwhile: the log is where the outcome goes
        log.write("repair", check=args.check, repair=args.repair, outcome=result.status,
                                  message=result.message, after_stop=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(_repair_process(sys.argv[1:]))
