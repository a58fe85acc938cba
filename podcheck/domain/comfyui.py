"""ComfyUI as it runs on a pod: its processes, their flags read the way ComfyUI's argparse reads them,
its HTTP API and its log. Everything goes through the pod, so it works on local, ssh and chroot hosts.

    procs = comfyui.processes(pod)                 # every process running {comfyui_dir}/main.py
    p = procs[0]
    p.args.get("--output-directory")                # '--output-directory X', '--output-directory=X', '--output X'
    p.args.use_sage_attention                       # also '--use-sage'
    p.dirs(pod.config.pod.comfyui_dir).temp         # the folders it really uses
    answer = comfyui.request(pod, p.url("/system_stats"))   # bounded by [comfyui] http_timeout
    answer.ok, answer.data["system"]["argv"]

The comfyui, attention and isolation checks use it; so can the comfyui.launch / relaunch and
memory.free repairs (`request(pod, p.url("/free"), "POST", {"free_memory": True})`).
"""
from __future__ import annotations

import json
import posixpath
import re
import time
from dataclasses import dataclass
from typing import Any, Sequence

from podcheck.domain.comfyui_args import (  # noqa: F401 - re-exported: comfyui.parse_args and friends
    APPEND,
    ATTENTION,
    CONST,
    DEFAULT_LISTEN,
    DEFAULT_PORT,
    FLAGS,
    Args,
    flag_names,
    parse_args,
    script_index,
)
from podcheck.domain.users import require_valid
from podcheck.host import procs, sides
from podcheck.host.paths import PLAIN, resolve

#: The per-user folders every ComfyUI must be given: its option, and the tree under the workspace
#: ({workspace}/<kind>/<user>) it must point into. ComfyUI empties its temp folder at start and exit;
#: --user-directory holds each user's settings and workflows (else all land in ComfyUI/user/default).
USER_FOLDERS = (("--output-directory", "output"), ("--input-directory", "input"), ("--temp-directory", "temp"),
                ("--user-directory", "user"))
#: ComfyUI's sqlite database (0.3.x: `--database-url`, default {comfyui_dir}/user/comfyui.db whatever
#: --user-directory says): one per user, in that user's --user-directory.
DATABASE_FLAG = "--database-url"
DATABASE_FILE = "comfyui.db"

#: The attention choice ComfyUI logs once per start (comfy/ldm/modules/attention.py).
ATTENTION_LINE = re.compile(r"^Using (sage|xformers|pytorch|Flash|Comfy Kitchen) attention|"
                            r"^Using (split|sub quadratic) optimization for attention")
#: What ComfyUI logs each time a sage call fails and it falls back to pytorch attention.
SAGE_FALLBACK = "Error running sage attention:"
#: The line the comfyui.launch repair writes to the log right before ComfyUI starts: `launch_banner(pid)`.
LAUNCH_BANNER = "[podcheck] ComfyUI launch pid="


# --- the command line: podcheck.domain.comfyui_args; the per-user options --------------------------

def database_url(workspace: str, user: str) -> str:
    """The sqlite URL of `user`'s own ComfyUI database (in their --user-directory)."""
    return "sqlite:///" + posixpath.join(workspace, "user", user, DATABASE_FILE)


def database_path(proc: "ComfyProcess", comfyui_dir: str) -> str | None:
    """The sqlite file a ComfyUI process uses (its --database-url, else 0.3.x's default under
    {comfyui_dir}/user), or None when it is not a sqlite file (an in-memory or server database)."""
    url = proc.args.get(DATABASE_FLAG) or "sqlite:///" + posixpath.join(comfyui_dir, "user", DATABASE_FILE)
    if not url.startswith("sqlite:///") or ":memory:" in url:
        return None
    return proc.path(url[len("sqlite:///"):])


def user_options(workspace: str, user: str) -> list[str]:
    """The options that give a ComfyUI its own folders for `user` (a valid name, else ValueError):
    what comfyui.launch_flags asks of every running ComfyUI."""
    require_valid(user)
    return [part for flag, kind in USER_FOLDERS for part in (flag, posixpath.join(workspace, kind, user))]


# --- processes ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Dirs:
    """The folders a ComfyUI process really uses (absolute; symlinks not followed)."""

    base: str
    output: str
    input: str
    temp: str
    user: str


@dataclass(frozen=True)
class ComfyProcess:
    """One running ComfyUI: its pid, full command line, working folder, start (epoch seconds on the
    pod's clock) and its options parsed."""

    pid: int
    argv: tuple[str, ...]
    cwd: str | None
    started: float | None
    script_at: int
    args: Args

    @property
    def script(self) -> str:
        return self.argv[self.script_at]

    @property
    def options(self) -> list[str]:
        """The command line after main.py: what ComfyUI's own `sys.argv[1:]` is."""
        return list(self.argv[self.script_at + 1:])

    @property
    def port(self) -> int:
        return self.args.port

    def url(self, path: str) -> str:
        return url_for(self.port, path, connect_host(self.args.listen))

    def path(self, value: str) -> str:
        """A path option as ComfyUI resolves it (os.path.abspath in its working folder)."""
        return posixpath.normpath(posixpath.join(self.cwd or "/", value))

    def dirs(self, comfyui_dir: str) -> Dirs:
        """Output, input, temp and user folders, as ComfyUI's folder_paths and main.py set them:
        `--X-directory` wins over `--base-directory`; the temp folder is `<--temp-directory>/temp`."""
        given = self.args.get
        base = self.path(given("--base-directory") or comfyui_dir)

        def folder(flag: str, name: str) -> str:
            value = given(flag)
            return self.path(value) if value else posixpath.join(base, name)

        temp = given("--temp-directory")
        return Dirs(base=base, output=folder("--output-directory", "output"), input=folder("--input-directory", "input"),
                    temp=posixpath.join(self.path(temp), "temp") if temp else posixpath.join(base, "temp"),
                    user=folder("--user-directory", "user"))

    def __str__(self) -> str:
        return f"pid {self.pid} (port {self.port})"


def processes(pod: Any) -> list[ComfyProcess]:
    """Every process running `{comfyui_dir}/main.py` (however it was named: relative to its working
    folder, through symlinks), oldest first."""
    comfyui_dir = posixpath.normpath(pod.config.pod.comfyui_dir)
    main = posixpath.join(comfyui_dir, "main.py")
    matched: list[tuple[int, list[str], str | None, float | None, int, str]] = []
    unsure: list[tuple[int, list[str], str | None, float | None, int, str]] = []
    for proc in procs.table(pod).values():
        pid, argv, cwd, started = proc.pid, list(proc.argv), proc.cwd, proc.started
        if not proc.running or not any(a.endswith("main.py") for a in argv):
            continue
        at = script_index(argv)
        if at is None or posixpath.basename(argv[at]) != "main.py" or (cwd is None and not argv[at].startswith("/")):
            continue
        script = posixpath.normpath(posixpath.join(cwd or "/", argv[at]))
        (matched if script == main else unsure).append((pid, argv, cwd, started, at, script))
    if unsure:
        real_main, *real = resolve(pod, [main] + [u[-1] for u in unsure])
        matched += [u for u, r in zip(unsure, real) if r == real_main]
    if not matched:
        return []
    names = flag_names(pod.read_text(posixpath.join(comfyui_dir, "comfy", "cli_args.py")))
    found = [ComfyProcess(pid, tuple(argv), cwd, started, at, parse_args(argv[at + 1:], names or None))
             for pid, argv, cwd, started, at, _ in matched]
    return sorted(found, key=lambda p: (p.started or 0.0, p.pid))


# --- HTTP ----------------------------------------------------------------------------------------

def connect_host(listen: str) -> str:
    """The address to reach a ComfyUI started with `--listen listen` from its own host."""
    addresses = [a.strip() for a in listen.split(",") if a.strip()]
    if not addresses or {"0.0.0.0", "127.0.0.1", "localhost"} & set(addresses):
        return "127.0.0.1"
    if "::" in addresses or "::1" in addresses:
        return "::1"
    return addresses[0]


def url_for(port: int, path: str, host: str = "127.0.0.1") -> str:
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{port}{path}"


@dataclass(frozen=True)
class Answer:
    """What an HTTP request got: `status` None when nothing answered; `data` parsed JSON (or text)."""

    url: str
    status: int | None
    data: Any
    error: str | None
    seconds: float

    @property
    def ok(self) -> bool:
        return self.error is None and self.status is not None and 200 <= self.status < 300


def request(pod: Any, url: str, method: str = "GET", body: Any = None, timeout: float | None = None) -> Answer:
    """One HTTP request from the pod's own host, answered within `timeout` ([comfyui] http_timeout)
    or given up; never raises. Local: urllib; remote: curl, else the pod python."""
    limit = float(timeout if timeout is not None else pod.config.comfyui.http_timeout)
    payload = json.dumps(body) if body is not None else None
    started = time.monotonic()
    status, text, error = sides.of(pod).request(url, method, payload, limit)
    return Answer(url, status, _decode(text), error, time.monotonic() - started)


def _decode(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


# --- the log -------------------------------------------------------------------------------------

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


def since_launch(lines: Sequence[str], procs: Sequence["ComfyProcess"], alone: bool) -> tuple[list, int]:
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


def is_loopback(listen: str) -> bool:
    """Whether ComfyUI listening on `listen` answers on loopback only (ComfyUI-Manager's is_loopback)."""
    addresses = [a.strip() for a in listen.split(",") if a.strip()]
    return bool(addresses) and all(a == "localhost" or a == "::1" or a.startswith("127.") for a in addresses)


#: What ComfyUI imports at start without listing it in requirements.txt, with the file that imports it
#: (0.3.64: requests, in app/frontend_management.py). The probe judges the same list (probe.START_IMPORTS).
UNLISTED = (("requests", "app/frontend_management.py"),)


def unlisted_imports(pod: Any, comfyui_dir: str) -> list[str]:
    """The modules of UNLISTED that this ComfyUI's own files import."""
    out = []
    for module, rel in UNLISTED:
        text = pod.read_text(posixpath.join(comfyui_dir, rel)) or ""
        if re.search(rf"^\s*(import {module}\b|from {module}\b)", text, re.M):
            out.append(module)
    return out
