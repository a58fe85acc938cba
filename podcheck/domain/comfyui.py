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
#: ({workspace}/<kind>/<user>) it must point into. ComfyUI empties its temp folder at start and exit.
USER_FOLDERS = (("--output-directory", "output"), ("--input-directory", "input"), ("--temp-directory", "temp"))

#: The attention choice ComfyUI logs once per start (comfy/ldm/modules/attention.py).
ATTENTION_LINE = re.compile(r"^Using (sage|xformers|pytorch|Flash|Comfy Kitchen) attention|"
                            r"^Using (split|sub quadratic) optimization for attention")
#: What ComfyUI logs each time a sage call fails and it falls back to pytorch attention.
SAGE_FALLBACK = "Error running sage attention:"
#: The line the comfyui.launch repair writes to the log right before ComfyUI starts: `launch_banner(pid)`.
LAUNCH_BANNER = "[podcheck] ComfyUI launch pid="


# --- the command line: podcheck.domain.comfyui_args; the per-user options --------------------------

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
    return next((i for i in range(len(lines) - 1, -1, -1) if lines[i].strip() == mine), None)


def last_start(lines: Sequence[str]) -> tuple[int, str] | None:
    """The last attention choice ComfyUI logged (once per start): its index and text."""
    for i in range(len(lines) - 1, -1, -1):
        if ATTENTION_LINE.match(lines[i].strip()):
            return i, lines[i].strip()
    return None
