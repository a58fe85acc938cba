"""Sample history kept in state (document `samples`): GPU utilisation per GPU, output-folder activity.

The watch mode appends samples as it goes, a check run appends the one it takes, and
training.progress reads them: "utilisation below 5 % for 300 s" needs more than one look.
Series have names ("gpu.0.util", "activity:/workspace/fluxgym/outputs/x") and are kept per host
(`uname -n`), so pods that share a state_dir do not mix their GPUs. Old points are dropped.

>>> below_for([(0, 90.0), (100, 1.0), (200, 0.0), (300, 2.0)], 5.0, now=310, max_gap=150)
210
>>> below_for([(0, 1.0), (300, 2.0)], 5.0, now=310, max_gap=150)  # a gap: nothing known in between
10
"""
from __future__ import annotations

from typing import Any

from podcheck.host.procs import now
from podcheck.host.state import State

DOC = "samples"
KEEP_SECONDS = 6 * 3600.0
MAX_POINTS = 2000


class Samples:
    """The sample history of one pod's host."""

    def __init__(self, pod: Any, keep_seconds: float = KEEP_SECONDS):

        self.pod = pod
        self.state = State(pod)
        self.keep_seconds = keep_seconds
        self._host: str | None = None

    @property
    def host(self) -> str:
        if self._host is None:
            ran = self.pod.run("uname", "-n")
            self._host = ran.stdout.strip() if ran.ok and ran.stdout.strip() else "unknown"
        return self._host

    def _load(self) -> dict[str, Any]:
        doc = self.state.read(DOC)
        return doc if isinstance(doc, dict) and isinstance(doc.get("hosts"), dict) else {"hosts": {}}

    def append(self, values: dict[str, float], t: float | None = None) -> None:
        """Add one point to each named series (at host time t, default now) and drop old points."""
        if not values:
            return
        if t is None:
            t = now(self.pod)
        doc = self._load()
        mine = doc["hosts"].setdefault(self.host, {})
        for name, value in values.items():
            points = [p for p in mine.get(name, []) if t - p[0] <= self.keep_seconds]
            points.append([round(t, 3), float(value)])
            mine[name] = points[-MAX_POINTS:]
        self.state.write(DOC, doc)

    def series(self, name: str, since: float | None = None) -> list[tuple[float, float]]:
        """The points of one series, oldest first."""
        points = self._load()["hosts"].get(self.host, {}).get(name, [])
        return [(float(t), float(v)) for t, v in points if since is None or t >= since]

    def record_gpus(self, nvml: dict[str, Any], t: float | None = None) -> None:
        """One utilisation point per GPU that NVML reported one for."""
        self.append({f"gpu.{g['index']}.util": g["utilization"] for g in nvml.get("gpus") or []
                     if isinstance(g.get("utilization"), (int, float))}, t)

    def record_activity(self, folder: str, newest_mtime: float, t: float | None = None) -> None:
        """The newest write time seen in `folder`."""
        self.append({f"activity:{folder}": newest_mtime}, t)


def below_for(points: list[tuple[float, float]], threshold: float, now: float, max_gap: float) -> float:
    """How long the series has stayed below `threshold` up to `now`, judging only what was sampled:
    the run of low points is cut where two points are more than `max_gap` apart (or the last is that old)."""
    if not points or now - points[-1][0] > max_gap or points[-1][1] >= threshold:
        return 0.0
    start = points[-1][0]
    for (t_prev, v_prev), (t_next, _) in zip(reversed(points[:-1]), reversed(points[1:])):
        if v_prev >= threshold or t_next - t_prev > max_gap:
            break
        start = t_prev
    return now - start
