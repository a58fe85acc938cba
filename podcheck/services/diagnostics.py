"""What `podcheck report` shows: everything a maintainer asks for first, gathered through the pod.

Each part is collected under a timeout; a part that fails or hangs becomes "could not collect
<what>: <why>" and the report goes on. After every part `on_update(doc)` is called, so a caller can
write the report as it grows and a hanging probe still leaves a usable file. Secret values met on
the way (secret environment variables, the rclone config) are taught to the Redactor.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from podcheck import __version__
from podcheck.host.pod import Pod
from podcheck.results import Report
from podcheck.services.diagnostic_parts import PARTS, Context, Section, fill_gpus  # noqa: F401 - Section, fill_gpus re-exported

if TYPE_CHECKING:  # the report's Redactor, taught the secret values met on the way
    from podcheck.reports.redact import Redactor

#: Presentation order of the sections; collection runs the cheap parts first and the probe last.
ORDER = ("toolchain", "checks", "python", "gpus", "identity", "system", "resources", "disk", "comfyui", "sync", "oom", "logs")


@dataclass
class Diagnostics:
    """The report's document: sections, the check results, the raw facts, and the raw logs for the bundle."""

    host: str
    started: float = field(default_factory=time.time)
    sections: list[Section] = field(default_factory=list)
    checks: Report | None = None
    facts: dict[str, Any] | None = None
    logs: dict[str, str] = field(default_factory=dict)
    collecting: str | None = None  # the part being collected; None once the report is complete
    duration_s: float = 0.0

    @property
    def complete(self) -> bool:
        return self.collecting is None

    def ordered(self) -> list[Section]:
        rank = {key: i for i, key in enumerate(ORDER)}
        return sorted(self.sections, key=lambda s: rank.get(s.key, len(ORDER)))

    def as_dict(self) -> dict[str, Any]:
        return {
            "schema": "podcheck-report/1", "podcheck": __version__, "host": self.host,
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "duration_s": round(self.duration_s, 3), "complete": self.complete, "collecting": self.collecting,
            "sections": [s.as_dict() for s in self.ordered()],
            "checks": self.checks.as_dict() if self.checks else None,
            "facts": self.facts,
        }



def collect(pod: Pod, redactor: Redactor, run_checks: Callable[[], Report],
            on_update: Callable[[Diagnostics], None] = lambda doc: None) -> Diagnostics:
    """Gather every part; `on_update(doc)` after each, with `doc.collecting` naming the next one."""
    ctx = Context(pod, redactor, run_checks)
    doc = ctx.doc = Diagnostics(host=pod.name)
    for key, title, part in PARTS:
        doc.collecting = title
        on_update(doc)
        section = Section(key, title)
        doc.sections.append(section)
        if key == "checks":  # in this thread: pytest redirects the process's stdout while it runs
            _guard(part, ctx, section)
        else:
            _bounded(part, ctx, section, _part_limit(pod, key))
    doc.collecting = None
    doc.duration_s = time.time() - doc.started
    on_update(doc)
    return doc


def _part_limit(pod: Pod, key: str) -> float:
    cfg = pod.config.pod
    if key in ("python", "gpus"):  # may gather the facts (probe + NVML) when no check did
        return cfg.probe_timeout + 2 * cfg.command_timeout + 20
    return 4 * cfg.command_timeout + 30


def _guard(part, ctx: Context, section: Section) -> None:
    try:
        part(ctx, section)
    except Exception as exc:  # a part that breaks is a gap in the report, not a crash
        section.missing.append(f"could not collect {section.title.lower()}: {type(exc).__name__}: {exc}")


def _bounded(part, ctx: Context, section: Section, limit: float) -> None:
    """Run one part in a thread; after `limit` seconds, keep what it found so far and move on."""
    scratch = Section(section.key, section.title)  # a late thread writes here, never into the report
    worker = threading.Thread(target=_guard, args=(part, ctx, scratch), daemon=True, name=f"report-{section.key}")
    worker.start()
    worker.join(limit)
    section.rows, section.texts, section.missing = dict(scratch.rows), dict(scratch.texts), list(scratch.missing)
    if worker.is_alive():
        section.missing.append(f"could not collect {section.title.lower()}: did not finish within {limit:g} s")
