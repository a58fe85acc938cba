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

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from podcheck import config as config_mod
from podcheck import runner
from podcheck.config import Config
from podcheck.facts import ProbeCache
from podcheck.fix import fixer
from podcheck.fix.markers import Markers
from podcheck.fix.registry import registry
from podcheck.host.files import LinkRefused, append_text, refuse_links
from podcheck.host.pod import Pod
from podcheck.reports.redact import Redactor
from podcheck.results import RepairResult, Report
from podcheck.runner import RunError
from podcheck.services import daemon
from podcheck.services.attempts import Limiter
from podcheck.services.daemon import AlreadyRunning, CannotStart, iso  # noqa: F401 - re-exported for the CLI

FAILING = ("failed", "error")
LOG_LIMIT = 5 * 1024 * 1024  # then watch.log moves to watch.log.1
@functools.cache
def starts_service(repair_id: str) -> bool:
    """Whether a repair (re)starts a service (its class says `starts_service`): watch runs such a repair
    only for a service that ran before (this watch saw its check pass, or podcheck started it: the
    repair has a marker). It restarts a ComfyUI that died; it does not start one nobody started."""
    repair = registry().get(repair_id)
    return bool(repair is not None and repair.starts_service)


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
                   pidfile=daemon.pidfile_path(cfg.pod.state_dir, "watch", host))


# --- watch.log -------------------------------------------------------------------------------------

class Log:
    """watch.log: one JSON object per line, appended in one write; secrets redacted."""

    def __init__(self, path: Path, redactor: Any = None, echo: Any = None):
        self.path, self.host = path, socket.gethostname()
        self.redactor = redactor
        self.echo = echo  # a text stream that gets each event as one line too (watch's stdout)

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
        append_text(self.path, line)
        if self.echo is not None:
            self._echo(entry)
        return entry

    def _echo(self, entry: dict[str, Any]) -> None:
        """'2026-01-02T12:00:00Z repair repair=ffmpeg outcome=changed message=...' on the echo stream."""
        rest = " ".join(f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in entry.items()
                        if k not in ("time", "host", "event"))
        try:
            self.echo.write(f"{entry['time']} {entry['event']}{' ' + rest if rest else ''}\n")
            self.echo.flush()
        except (OSError, ValueError):  # a closed or full stdout never stops the watch
            pass


def redactor_for(cfg: Config):
    """The reports layer's Redactor, taught the secret environment variables and the values in the
    pod's rclone config, so they are removed wherever they show up."""

    return Redactor.for_config(cfg)


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
        try:
            refuse_links(self.log.path)
        except LinkRefused as exc:
            raise CannotStart(str(exc)) from None
        with daemon.pidfile(self.settings.pidfile), daemon.on_signals(self._on_signal):
            try:
                self.log.write("start", pid=os.getpid(), interval=self.settings.interval,
                               select=self.settings.select, repairs=sorted(self.settings.repairs))
                daemon.every(self.settings.interval, self.cycle, lambda: self.stopping,
                             lambda exc: self._complain(f"round failed: {type(exc).__name__}: {exc}"))
            except Stop:
                pass
            finally:
                self._in_repair = True  # no more interruptions while we write the last line
                still = self.engine.running_pid()
                self.log.write("stop", signal=self.signal_name, repair_running=still,
                               message=f"repair pid {still} finishes on its own and logs its outcome" if still else None)
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
            if starts_service(r.repair) and r.id not in self.ever_passed and not self.engine.started_before(r.repair):
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
    # stdout taken now: the check runs redirect sys.stdout while pytest runs
    return Watch(cfg, settings, log=Log(settings.log, redactor_for(cfg), echo=sys.stdout)).run()


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
