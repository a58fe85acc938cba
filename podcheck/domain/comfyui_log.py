"""What ComfyUI's log says: the log's tail read from the pod, podcheck's launch banners and the lines
of one run, the attention choice and sage's fallbacks (with their causes), custom nodes that failed to
load, out-of-memory errors and ComfyUI-Manager's refusals; ComfyUI-Manager's timestamp prefix is read
through everywhere. The comfyui and attention checks read it, and so do the comfyui.launch and
relaunch repairs; the processes, their flags and the HTTP API are podcheck.domain.comfyui.

    log = comfyui_log.read_log(pod, pod.config.comfyui.log)       # the tail, with its mtime
    lines = (log.text or "").splitlines()
    judged, at = comfyui_log.since_launch(lines, comfyui.processes(pod), alone=True)
    comfyui_log.node_failures(lines[at:]), comfyui_log.oom_lines(lines[at:])
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any, Sequence

from podcheck.domain.comfyui import ComfyProcess
from podcheck.host.paths import PLAIN

#: The attention choice ComfyUI logs once per start (comfy/ldm/modules/attention.py).
ATTENTION_LINE = re.compile(r"^Using (sage|xformers|pytorch|Flash|Comfy Kitchen) attention|"
                            r"^Using (split|sub quadratic) optimization for attention")
#: What ComfyUI logs each time a sage call fails and it falls back to pytorch attention.
SAGE_FALLBACK = "Error running sage attention:"
#: The line the comfyui.launch repair writes to the log right before ComfyUI starts: `launch_banner(pid)`.
LAUNCH_BANNER = "[podcheck] ComfyUI launch pid="


def launch_banner(pid: int) -> str:
    """The line to write to the log just before ComfyUI `pid` starts writing to it
    (e.g. `sh -c 'echo "[podcheck] ComfyUI launch pid=$$"; exec python main.py ...' >>log 2>&1`)."""
    return f"{LAUNCH_BANNER}{pid}"


@dataclass(frozen=True)
class Log:
    """The tail of a log file on the pod: `text` None when it cannot be read (`error` says why)."""

    path: str
    text: str | None
    mtime: float | None
    error: str | None = None


def read_log(pod: Any, path: str, max_bytes: int = 8 << 20) -> Log:
    """The last `max_bytes` of a log, with its modification time (epoch seconds, the pod's clock)."""
    ran = pod.run("sh", "-c", 'stat -c %Y -- "$1" && tail -c "$2" -- "$1"', "sh", path, str(max_bytes), env=PLAIN)
    if not ran.ok:
        lines = ran.stderr.strip().splitlines()
        return Log(path, None, None, lines[-1] if lines else ran.why())
    stamp, _, text = ran.stdout.partition("\n")
    return Log(path, text, float(stamp) if stamp.strip().isdigit() else None)


def launch_line(lines: Sequence[str], pid: int) -> int | None:
    """Where in a log ComfyUI `pid` was launched: the index of its last launch banner, or None."""
    mine = launch_banner(pid)
    return next((i for i in range(len(lines) - 1, -1, -1) if strip_prefix(lines[i]).strip() == mine), None)


def run_lines(text: str, pid: int, alone: bool = True) -> list[str] | None:
    """The lines ComfyUI `pid` wrote: from its launch banner to the next banner (or the end). Without
    a banner: the whole log when `alone` (it is the only ComfyUI writing there), else None."""
    lines = text.splitlines()
    at = launch_line(lines, pid)
    if at is None:
        return lines if alone else None
    end = next((i for i in range(at + 1, len(lines)) if lines[i].startswith(LAUNCH_BANNER)), len(lines))
    return lines[at + 1:end]


_FRAME = re.compile(r"^\s+(File \"|\^+$|~+)|^Traceback \(most recent call last\):$")


def explanation(lines: Sequence[str], count: int = 6) -> list[str]:
    """The lines of a run that explain why it ended: the last `count` lines that are not a traceback's
    frames (its `File ...` lines and their source lines are dropped, its final error line kept)."""
    kept: list[str] = []
    in_traceback = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
            continue
        if in_traceback and (line.startswith((" ", "\t")) or not line.strip()):
            continue
        in_traceback = False
        if line.strip() and not _FRAME.match(line):
            kept.append(strip_prefix(line).strip())
    return kept[-count:]


#: ComfyUI-Manager's log prefix (`[2025-10-12 10:00:00.123] `) on every line it tees to the log.
_MANAGER_PREFIX = re.compile(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\] ")


def strip_prefix(line: str) -> str:
    """A log line without ComfyUI-Manager's `[YYYY-MM-DD HH:MM:SS.mmm] ` prefix."""
    return _MANAGER_PREFIX.sub("", line, count=1)


def last_start(lines: Sequence[str]) -> tuple[int, str] | None:
    """The last attention choice ComfyUI logged (once per start): its index and text."""
    for i in range(len(lines) - 1, -1, -1):
        line = strip_prefix(lines[i]).strip()
        if ATTENTION_LINE.match(line):
            return i, line
    return None


#: Why sage fell back, from the error ComfyUI logged (comfy/ldm/modules/attention.py), first match wins:
#: (a piece of the error, the cause, whether rebuilding sage for this GPU can help).
SAGE_CAUSES = (
    ("must be on cuda", "the tensors were not on a CUDA device (ComfyUI runs on the CPU: --cpu, no GPU, or the "
                        "model offloaded); sage runs only on CUDA, so every call falls back", False),
    ("head_dim", "this model's attention head size is one sage has no kernel for; those layers fall back "
                 "(not a broken install)", False),
    ("dtype", "this model's attention runs in a dtype sage does not take (it needs fp16/bf16); those layers fall "
              "back (not a broken install)", False),
    ("no kernel image is available", "sage's kernels were not built for this GPU", True),
    ("kernel is not available", "sage's kernels were not built for this GPU", True),
    ("invalid device function", "sage's kernels were not built for this GPU", True),
    ("out of memory", "the GPU ran out of memory during a sage call", False),
)


def sage_cause(error: str) -> tuple[str, bool]:
    """(the cause of a sage fallback line, whether reinstalling sage for this GPU can help)."""
    low = error.lower()
    for piece, cause, rebuild in SAGE_CAUSES:
        if piece.lower() in low:
            return cause, rebuild
    return "sage failed on this call (see the error)", True


def since_launch(lines: Sequence[str], procs: Sequence[ComfyProcess], alone: bool) -> tuple[list, int]:
    """The processes whose lines can be told in the log, and the index where the oldest of them was
    launched: podcheck's launch banners; without any banner, the last start ComfyUI logged when it is
    the only ComfyUI running. ComfyUI's lines carry no pid, so several runs in one log are judged together."""
    banners = {p.pid: launch_line(lines, p.pid) for p in procs}
    judged = [p for p in procs if banners[p.pid] is not None]
    if judged:
        return judged, min(banners[p.pid] for p in judged) + 1
    if alone and procs and not any(strip_prefix(line).startswith(LAUNCH_BANNER) for line in lines):
        start = next((i for i in range(len(lines) - 1, -1, -1)
                      if strip_prefix(lines[i]).startswith(START_LINE)), None)
        if start is None:
            start = (last_start(lines) or (None,))[0]
        if start is not None:
            return list(procs), start
    return [], 0


#: The first line ComfyUI logs at each start (main.py's prestartup banner).
START_LINE = "** ComfyUI startup time:"

#: `Cannot import <path> module for custom nodes: <error>` and `<t> seconds (IMPORT FAILED): <path>`,
#: what ComfyUI's nodes.py logs for a custom node that fails to load at start.
_CANNOT_IMPORT = re.compile(r"^Cannot import (?P<path>.+?) module for custom nodes: (?P<error>.*)$")
_IMPORT_FAILED = re.compile(r"^\s*[\d.]+ seconds \(IMPORT FAILED\): (?P<path>.+)$")
_NO_MODULE = re.compile(r"No module named '(?P<module>[^']+)'")


@dataclass(frozen=True)
class NodeFailure:
    """A custom node that did not load: its folder, the error and the module it missed (if that was it)."""

    path: str
    error: str

    @property
    def name(self) -> str:
        return posixpath.basename(self.path.rstrip("/"))

    @property
    def missing_module(self) -> str | None:
        m = _NO_MODULE.search(self.error)
        return m.group("module") if m else None


def node_failures(lines: Sequence[str]) -> list[NodeFailure]:
    """The custom nodes a ComfyUI run could not import, in the order it logged them (one per path)."""
    errors: dict[str, str] = {}
    failed: list[str] = []
    for raw in lines:
        line = strip_prefix(raw).rstrip()
        m = _CANNOT_IMPORT.match(line.strip())
        if m:
            errors[m.group("path")] = m.group("error").strip()
            continue
        m = _IMPORT_FAILED.match(line)
        if m and m.group("path").strip() not in failed:
            failed.append(m.group("path").strip())
    paths = failed + [p for p in errors if p not in failed]
    return [NodeFailure(p, errors.get(p, "IMPORT FAILED (no error logged)")) for p in paths]


#: What torch logs when a CUDA allocation fails during a generation (ComfyUI prints the exception).
OOM_SIGNS = ("torch.OutOfMemoryError", "OutOfMemoryError:", "CUDA out of memory", "Allocation on device",
             "Got an OOM, unloading all loaded models")


def oom_lines(lines: Sequence[str]) -> list[str]:
    return [strip_prefix(line).strip() for line in lines if any(s in line for s in OOM_SIGNS)]


#: What ComfyUI-Manager logs when its security level refuses an action (glob/manager_server.py).
MANAGER_REFUSALS = ("is not allowed in this security_level", "is not allowed with this security level",
                    "To use this feature, you must either set '--listen' to a local IP",
                    "a security_level of `middle or below` is required")


def manager_refusals(lines: Sequence[str]) -> list[str]:
    return [strip_prefix(line).strip() for line in lines if any(s in line for s in MANAGER_REFUSALS)]
