"""Sync jobs running on the host that podcheck did not start: rclone transfers, and the shell loops and
scripts around them (`while true; do rclone sync /workspace/output gdrive:...; sleep 10; done` in a
`bash -c`, or in a loop script), found by default, without [sync] process_pattern.

- every running `rclone sync|copy|move|bisync` is a job with its exact argv's source and destination;
- every shell (sh, bash, dash, zsh, ash) whose `-c` text or script file runs an rclone transfer is a
  job, with the transfers written there with literal arguments (a line using a shell variable is not judged: its
  values are unknown, and the running rclone's own argv shows them while it runs);
- processes matching `process_pattern` count too, with the `.sh` scripts in their argv;
- podcheck's managed loop (syncloop.MARKER) and the rclone runs below it are left out.

>>> bool(RUNS_TRANSFER.search('rclone config dump')), bool(RUNS_TRANSFER.search('rclone -v sync "$d" "g:o/$u"'))
(False, True)
>>> [t.dst for t in transfers_in_text('while true; do\\n  rclone sync "/w/output" gdrive:o --transfers 2\\n  sleep 5\\ndone')]
['gdrive:o']
"""
from __future__ import annotations

import posixpath
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

from podcheck.domain import rclone
from podcheck.host import procs

SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ash"})
MANAGED_MARKER = "podcheck.syncloop"  # syncloop.MARKER (not imported: syncloop ships alone to remote pods)
SCRIPT_LIMIT = 262144  # bytes of a loop script read
#: A line that runs an rclone transfer (`rclone [flags] sync|copy|move|bisync ...`), variables or not.
RUNS_TRANSFER = re.compile(r"\brclone\b[^\n;|&]*?\s(?:sync|copy|move|bisync)\s")


@dataclass
class Job:
    pid: int
    what: str                     # how the job is named in messages
    loop: bool                    # a shell loop or script (it runs again), not a single rclone run
    transfers: list[rclone.Transfer] = field(default_factory=list)
    text: str = ""                # the shell's -c text or script (empty for a single rclone run)
    matched: bool = False         # it matches [sync] process_pattern

    def concerns(self, folders: tuple[str, ...]) -> bool:
        """Whether this job syncs one of `folders` (this pod's): a literal source under one, or a loop text
        naming one, or a process_pattern match (the user said so)."""
        return (self.matched or any((t.src.rstrip("/") + "/").startswith(folders) for t in self.transfers)
                or any(f.rstrip("/") in self.text for f in folders))


def transfers_in_text(text: str) -> list[rclone.Transfer]:
    """rclone transfers with literal arguments in shell text (lines using $variables are not judged)."""
    found = []
    for line in re.split(r"[\n;]|&&|\|\|", text):
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if "rclone" not in line or "$" in line or "`" in line:
            continue
        try:
            words = shlex.split(line)
        except ValueError:
            continue
        while words and words[0] != "rclone" and not words[0].endswith("/rclone"):
            words.pop(0)
        transfer = rclone.parse_transfer(words)
        if transfer:
            found.append(transfer)
    return found


def _shell_text(pod: Any, argv: list[str], cwd: str | None) -> tuple[str | None, str | None]:
    """(what a shell runs: its -c text or its script's text, the script path or None)."""
    args = argv[1:]
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] not in ("-c", "--"):
        i += 1
    if i < len(args) and args[i] == "-c":
        return (args[i + 1] if i + 1 < len(args) else None), None
    if i < len(args) and args[i] == "--":
        i += 1
    if i >= len(args):
        return None, None  # an interactive shell
    script = args[i]
    if not script.startswith("/") and cwd:
        script = posixpath.normpath(posixpath.join(cwd, script))
    ran = pod.run("head", "-c", str(SCRIPT_LIMIT), "--", script)
    return (ran.stdout if ran.ok else None), script


def _managed(listing: list[procs.Proc], p: procs.Proc) -> bool:
    return MANAGED_MARKER in p.args or any(MANAGED_MARKER in a.args for a in procs.ancestors(listing, p.pid))


def _words(args: str, limit: int = 200) -> str:
    """A command line for a message: whole words up to `limit` characters (a cut word could be the
    part of a secret that redaction no longer recognises)."""
    kept: list[str] = []
    size = 0
    for word in args.split():
        if size + len(word) > limit:
            return " ".join(kept) + " …"
        kept.append(word)
        size += len(word) + 1
    return " ".join(kept)


def find(pod: Any, listing: list[procs.Proc] | None = None, pattern: re.Pattern[str] | None = None) -> list[Job]:
    """The sync jobs running on the host (see the module's docstring), podcheck's own loop left out."""
    listing = procs.listing(pod) if listing is None else listing
    jobs: list[Job] = []
    for p in listing:
        matched = pattern is not None and pattern.search(p.args) is not None
        words = p.args.split()
        if not words:  # a kernel thread or a zombie: no command line
            continue
        script_shell = posixpath.basename(words[0]) in SHELLS and len(words) > 1  # its script may run rclone
        if not ("rclone" in p.args or matched or script_shell) or p.args.startswith(("ps ", "timeout ")):
            continue
        if _managed(listing, p):
            continue
        argv = procs.argv(pod, p.pid) or []
        if not argv:
            continue
        transfer = rclone.parse_transfer(argv)
        if transfer:
            jobs.append(Job(p.pid, f"rclone pid {p.pid}", False, [transfer]))
            continue
        if posixpath.basename(argv[0]) in SHELLS:
            text, script = _shell_text(pod, argv, procs.cwd(pod, p.pid))
            if text and (RUNS_TRANSFER.search(text) or matched):
                name = f"{script} (pid {p.pid})" if script else f"{posixpath.basename(argv[0])} -c loop (pid {p.pid})"
                jobs.append(Job(p.pid, name, True, transfers_in_text(text), text, matched))
                continue
        if matched:
            scripts = [a for a in argv if a.endswith(".sh")]
            found = [t for s in scripts for t in transfers_in_text((pod.read_text(s) or "")[:SCRIPT_LIMIT])]
            jobs.append(Job(p.pid, f"{scripts[0]} (pid {p.pid})" if scripts else f"pid {p.pid} ({_words(p.args)})",
                            True, found, matched=True))
    return jobs
