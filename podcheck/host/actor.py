"""Who makes a change on the pod: an `Actor` runs it. Domain code that changes the pod (the sync
loop's start, training.resume) takes one, so a repair can hand it the fix engine's recorded runner
(podcheck.fix.repair.Context: every change logged, and in a dry run recorded but not made).

>>> act = Actor(pod)
>>> act.run("true").ok, act.dry_run
(True, False)
>>> act.do("write the loop's settings", lambda: 42, planned=0)
42
"""
from __future__ import annotations

from typing import Any, Callable, TypeVar

from podcheck.host.pod import Ran

T = TypeVar("T")


class Actor:
    """The plain actor: every change is made at once, nothing is recorded."""

    dry_run = False

    def __init__(self, pod: Any):
        self.pod = pod

    def run(self, *argv: str, timeout: float | None = None, env: dict[str, str] | None = None,
            tagged: bool = True) -> Ran:
        """A command that changes the pod."""
        return self.pod.run(*argv, timeout=timeout, env=env)

    def do(self, shown: str, action: Callable[[], T], planned: T) -> T:
        """A change that is no command (an HTTP POST, a state file written in Python): `shown` names it
        in the record, `planned` is what a dry run returns instead of doing it."""
        return action()


def planned_ran(argv: tuple[str, ...] | list[str], timeout: float | None = None) -> Ran:
    """What a command that a dry run did not run returns: success, no output."""
    return Ran([str(a) for a in argv], 0, "", "", 0.0, float(timeout or 0))
