"""How often watch may repair one check: a cap per rolling hour and a pause that grows with each
attempt since the check last passed.

>>> lim = Limiter(per_hour=2, backoff=60)
>>> lim.verdict("comfyui.running", 0.0)
('go', 0.0)
"""
from __future__ import annotations

from dataclasses import dataclass, field

HOUR = 3600.0


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
