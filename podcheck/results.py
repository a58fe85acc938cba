"""The result model: one CheckResult per check, one Report per host and run (the JSON contract)."""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

SCHEMA = "podcheck/1"
STATUSES = ("passed", "failed", "skipped", "error")


@dataclass
class CheckResult:
    id: str
    area: str
    status: str  # passed | failed | skipped | error
    message: str = ""
    repair: str | None = None
    blocked_by: str | None = None
    duration_s: float = 0.0
    description: str = ""
    remedy: str = ""  # what to do by hand when no repair fixes it

    @property
    def to_fix(self) -> str:
        """What fixes this failure: `podcheck --fix` with its repair, else the check's remedy."""
        if self.repair:
            return f"podcheck --fix (repair {self.repair})"
        return self.remedy

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("description")
        out["duration_s"] = round(self.duration_s, 4)
        return out


@dataclass
class RepairResult:
    id: str
    status: str  # changed | unchanged | failed | skipped
    message: str = ""
    commands: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "message": self.message,
                "commands": list(self.commands), "duration_s": round(self.duration_s, 3)}


@dataclass
class Report:
    host: str
    profile: str
    started: float = field(default_factory=time.time)
    duration_s: float = 0.0
    results: list[CheckResult] = field(default_factory=list)
    repairs: list[RepairResult] = field(default_factory=list)
    before: list[CheckResult] | None = None  # results before `--fix`, when repairs ran
    facts: dict[str, Any] | None = None

    @property
    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        for r in self.results:
            counts[r.status] += 1
        return counts

    @property
    def failures(self) -> list[CheckResult]:
        return [r for r in self.results if r.status in ("failed", "error")]

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_dict(self) -> dict[str, Any]:
        out = {
            "schema": SCHEMA,
            "host": self.host,
            "profile": self.profile,
            "started": datetime.fromtimestamp(self.started, timezone.utc).isoformat(timespec="seconds"),
            "duration_s": round(self.duration_s, 3),
            "results": [r.as_dict() for r in self.results],
            "repairs": [r.as_dict() for r in self.repairs],
            "summary": self.summary,
        }
        if self.before is not None:
            out["before"] = [r.as_dict() for r in self.before]
        return out
