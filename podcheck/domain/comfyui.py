"""ComfyUI as it runs on a pod: its processes, their flags read the way ComfyUI's argparse reads them
(podcheck.domain.comfyui_args), the per-user folders and database each must be given, what it imports
unlisted, and its HTTP API. Everything goes through the pod, so it works on local, ssh and chroot hosts.
The comfyui, attention and isolation checks use it, and so do the comfyui.launch / relaunch and
memory.free repairs. What its log says is podcheck.domain.comfyui_log.

    procs = comfyui.processes(pod)                 # every process running {comfyui_dir}/main.py
    p = procs[0]
    p.args.get("--output-directory")                # '--output-directory X', '--output-directory=X', '--output X'
    p.args.use_sage_attention                       # also '--use-sage'
    p.dirs(pod.config.pod.comfyui_dir).temp         # the folders it really uses
    answer = comfyui.request(pod, p.url("/system_stats"))   # bounded by [comfyui] http_timeout
    answer.ok, answer.data["system"]["argv"]
    comfyui.request(pod, p.url("/free"), "POST", {"free_memory": True})   # memory.free
"""
from __future__ import annotations

import json
import posixpath
import re
import time
from dataclasses import dataclass
from typing import Any

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
from podcheck.host.paths import resolve

#: The per-user folders every ComfyUI must be given: its option, and the tree under the workspace
#: ({workspace}/<kind>/<user>) it must point into. ComfyUI empties its temp folder at start and exit;
#: --user-directory holds each user's settings and workflows (else all land in ComfyUI/user/default).
USER_FOLDERS = (("--output-directory", "output"), ("--input-directory", "input"), ("--temp-directory", "temp"),
                ("--user-directory", "user"))
#: ComfyUI's sqlite database (0.3.x: `--database-url`, default {comfyui_dir}/user/comfyui.db whatever
#: --user-directory says): one per user, in that user's --user-directory.
DATABASE_FLAG = "--database-url"
DATABASE_FILE = "comfyui.db"


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
