"""Shell idioms on the pod's host, each written once: write a file atomically, start a program
detached, stop a process (TERM, then KILL after a grace, its whole process group when it leads
one), the tail of a log.

Each takes the `run` that carries the commands out: `pod.run`, or a repair's recorded `ctx.run`, so
that a repair's actions are recorded like any other command.

>>> pid, ran = start_detached(pod.run, ["python3", "-m", "http.server"], "/workspace/http.log")
>>> stop(pod, pod.run, pid, grace=5)
True
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from podcheck.host import procs

# Write $1 to $2 in one step: a temp file beside it, fsync, rename (-T: over a link, never into its
# target). $3: a chmod mode for it; $4: a file whose mode it takes (chmod --reference); $5 set: a
# symlink at $2 is refused (exit 3), for podcheck's own files on a volume others write.
WRITE = ('[ -n "$5" ] && [ -L "$2" ] && { echo "refusing to write $2: it is a symlink podcheck did not make" >&2; '
         'exit 3; }; mkdir -p "$(dirname "$2")" && t="$2.podcheck.$$.tmp" && printf %s "$1" > "$t" && '
         '{ [ -z "$3" ] || chmod "$3" "$t"; } && { [ -z "$4" ] || chmod --reference="$4" "$t"; } && '
         'sync "$t" && mv -fT "$t" "$2"')



# Start "$@" detached: its own session (podcheck's exit, a timeout's kill, the terminal's hangup never
# reach it), no tty, stdin from /dev/null, output appended to the log (never through a planted symlink); $3, when set, is a line written
# to the log first. Prints the new pid, which leads its session and process group.
START = """
cwd="$1"; log="$2"; header="$3"; shift 3
[ -L "$log" ] && { echo "refusing to write $log: it is a symlink podcheck did not make" >&2; exit 1; }
mkdir -p "$(dirname "$log")" || exit 1
cd "$cwd" || exit 1
if [ -n "$header" ]; then printf '%s\\n' "$header" >> "$log" || exit 1; fi
setsid "$@" </dev/null >>"$log" 2>&1 &
echo $!
"""
# Signal ($2) the process group that $1 leads, or $1 alone when it leads none.
# (Group $1 exists only while process $1 leads it: a pid is not reused while its group lives.)
SIGNAL = 'kill -s "$2" -- -"$1" 2>/dev/null || kill -s "$2" -- "$1" 2>/dev/null; true'

Run = Callable[..., Any]  # pod.run or a repair's ctx.run: (*argv, **kw) -> Ran


def write(run: Run, path: str, text: str, mode: str = "", like: str = "", refuse_link: bool = False) -> Any:
    """Replace `path` with `text` atomically on the host (see WRITE); the Ran."""
    return run("sh", "-c", WRITE, "sh", text, path, mode, like, "1" if refuse_link else "")


def start_detached(run: Run, argv: Sequence[str], log: str, cwd: str = "/", header: str = "",
                   dry_run: bool = False) -> tuple[int | None, Any]:
    """Start argv detached in `cwd`, output appended to `log`: (its pid, or None when it did not start; the Ran).
    A dry run's `run` records the start without making it: its pid is 0."""
    ran = run("sh", "-c", START, "sh", cwd, log, header, *argv)
    if dry_run:
        return 0, ran
    pid = ran.stdout.strip()
    return (int(pid) if ran.ok and pid.isdigit() else None), ran


def tail(run: Run, path: str, lines: int = 5) -> list[str]:
    """The last `lines` lines of a file on the host ([] when it cannot be read)."""
    ran = run("tail", "-n", str(int(lines)), "--", path)
    return ran.stdout.splitlines() if ran.ok else []


def signal(run: Run, pid: int, name: str) -> None:
    """Send signal `name` (TERM, KILL) to `pid`'s process group when it leads one, else to `pid`."""
    run("sh", "-c", SIGNAL, "sh", str(int(pid)), name)


def send(run: Run, name: str, targets: Sequence[str]) -> None:
    """Send signal `name` to each target (a pid, or -pgid for a whole group); gone ones are passed over."""
    run("sh", "-c", 'kill -s "$0" -- "$@" 2>/dev/null; true', name, *targets)


def stop(pod: Any, run: Run, pid: int, grace: float = 10.0, marker: str = "", poll: float = 0.1,
         dry_run: bool = False) -> bool:
    """TERM `pid` (its process group when it leads one), KILL after `grace` s; True when it is gone.
    With `marker`, a process whose argv lacks it counts as gone (the pid was reused). A dry run
    records the TERM and takes the path where it was enough."""
    signal(run, pid, "TERM")
    if dry_run:
        return True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if not procs.alive(pod, pid, marker):
            return True
        time.sleep(poll)
    signal(run, pid, "KILL")
    time.sleep(0.2)
    return not procs.alive(pod, pid, marker)
