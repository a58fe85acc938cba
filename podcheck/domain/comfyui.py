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

import base64
import json
import posixpath
import re
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

from podcheck.domain.users import require_valid
from podcheck.host.paths import PLAIN, resolve

DEFAULT_PORT = 8188
DEFAULT_LISTEN = "127.0.0.1"

#: Every option of ComfyUI's comfy/cli_args.py (v0.3.x through 2026). Only their names matter here:
#: argparse accepts any unique prefix of one. The pod's own cli_args.py, when readable, decides instead.
FLAGS = frozenset("""
--listen --port --tls-keyfile --tls-certfile --enable-cors-header --max-upload-size --base-directory
--extra-model-paths-config --output-directory --date-based-output --date-output-format --temp-directory
--input-directory --models-directory --user-directory --auto-launch --disable-auto-launch --cuda-device
--default-device --cuda-malloc --disable-cuda-malloc --force-fp32 --force-fp16 --fp32-unet --fp64-unet
--bf16-unet --fp16-unet --fp8_e4m3fn-unet --fp8_e5m2-unet --fp8_e8m0fnu-unet --fp16-vae --fp32-vae
--bf16-vae --cpu-vae --fp8_e4m3fn-text-enc --fp8_e5m2-text-enc --fp16-text-enc --fp32-text-enc
--bf16-text-enc --fp16-intermediates --force-channels-last --directml --oneapi-device-selector
--disable-ipex-optimize --supports-fp8-compute --enable-triton-backend --disable-triton-backend
--preview-method --preview-size --cache-ram --cache-classic --cache-lru --cache-none --high-ram
--use-split-cross-attention --use-quad-cross-attention --use-pytorch-cross-attention --use-sage-attention
--use-flash-attention --use-ck-attention --disable-xformers --force-upcast-attention --dont-upcast-attention
--enable-manager --disable-manager-ui --enable-manager-legacy-ui --gpu-only --highvram --normalvram
--lowvram --novram --cpu --reserve-vram --vram-headroom --disable-nvml-pressure --async-offload
--disable-async-offload --disable-dynamic-vram --enable-dynamic-vram --fast-disk --disable-fast-disk
--disable-cuda-graphs --disable-comfy-compiler --assert-graph-breaks --force-non-blocking
--default-hashing-function --disable-smart-memory --deterministic --fast --debug-hang
--disable-pinned-memory --mmap-torch-files --disable-mmap --dont-print-server --quick-test-for-ci
--windows-standalone-build --disable-metadata --disable-all-custom-nodes --whitelist-custom-nodes
--disabled-nodes-config --disable-partner-nodes --offline --disable-api-nodes --multi-user --verbose
--log-stdout --front-end-version --front-end-root --enable-compress-response-body --comfy-api-base
--database-url --disable-assets --enable-assets --enable-asset-hashing --feature-flag --list-feature-flags
""".split())

#: Options ComfyUI's argparse takes more than once, keeping every use (action="append"): a relaunch
#: must give each use back, not the last one alone.
APPEND = frozenset({"--extra-model-paths-config", "--feature-flag", "--verbose"})

#: Options whose value may be left out (argparse nargs="?"), with the value they take then.
CONST = {"--listen": "0.0.0.0,::", "--enable-cors-header": "*", "--directml": "-1", "--async-offload": "2",
         "--verbose": "DEBUG"}

#: The per-user folders every ComfyUI must be given: its option, and the tree under the workspace
#: ({workspace}/<kind>/<user>) it must point into. ComfyUI empties its temp folder at start and exit;
#: --user-directory holds each user's settings and workflows (else all land in ComfyUI/user/default).
USER_FOLDERS = (("--output-directory", "output"), ("--input-directory", "input"), ("--temp-directory", "temp"),
                ("--user-directory", "user"))
#: ComfyUI's sqlite database (0.3.x: `--database-url`, default {comfyui_dir}/user/comfyui.db whatever
#: --user-directory says): one per user, in that user's --user-directory.
DATABASE_FLAG = "--database-url"
DATABASE_FILE = "comfyui.db"

#: ComfyUI's mutually exclusive attention options and the line it logs at start for each.
ATTENTION = {
    "--use-sage-attention": "Using sage attention",
    "--use-flash-attention": "Using Flash Attention",
    "--use-pytorch-cross-attention": "Using pytorch attention",
    "--use-split-cross-attention": "Using split optimization for attention",
    "--use-quad-cross-attention": "Using sub quadratic optimization for attention",
    "--use-ck-attention": "Using Comfy Kitchen attention",
}
#: The attention choice ComfyUI logs once per start (comfy/ldm/modules/attention.py).
ATTENTION_LINE = re.compile(r"^Using (sage|xformers|pytorch|Flash|Comfy Kitchen) attention|"
                            r"^Using (split|sub quadratic) optimization for attention")
#: What ComfyUI logs each time a sage call fails and it falls back to pytorch attention.
SAGE_FALLBACK = "Error running sage attention:"
#: The line the comfyui.launch repair writes to the log right before ComfyUI starts: `launch_banner(pid)`.
LAUNCH_BANNER = "[podcheck] ComfyUI launch pid="

_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
_ADD_ARGUMENT = re.compile(r"""add_argument\(\s*["'](--[A-Za-z0-9][\w-]*)["']""")
_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")


# --- the command line --------------------------------------------------------------------------

@dataclass(frozen=True)
class Args:
    """ComfyUI's options as its argparse reads them: `given` maps each option's full name to the values
    of its last use (of every use, for APPEND options) (an empty list: given without a value); `problems` are what argparse would refuse."""

    given: dict[str, list[str]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def has(self, flag: str) -> bool:
        return flag in self.given

    def get(self, flag: str, default: str | None = None) -> str | None:
        """The value of a one-value option (its const when given bare, like `--listen`), or `default`."""
        if flag not in self.given:
            return default
        values = self.given[flag]
        return values[-1] if values else CONST.get(flag, default)

    @property
    def port(self) -> int:
        try:
            return int(self.get("--port") or DEFAULT_PORT)
        except ValueError:
            return DEFAULT_PORT

    @property
    def listen(self) -> str:
        return self.get("--listen") or DEFAULT_LISTEN

    @property
    def attention(self) -> str | None:
        """The attention option given (`--use-sage-attention`...), or None for ComfyUI's default."""
        return next((f for f in ATTENTION if f in self.given), None)

    @property
    def use_sage_attention(self) -> bool:
        return "--use-sage-attention" in self.given


def flag_names(cli_args_source: str | None) -> frozenset[str]:
    """The options a ComfyUI version defines, read from its comfy/cli_args.py (empty when unreadable)."""
    return frozenset(_ADD_ARGUMENT.findall(cli_args_source or ""))


def parse_args(tokens: Sequence[str], names: frozenset[str] | None = None) -> Args:
    """Read ComfyUI options like argparse: `--opt value`, `--opt=value`, unique prefixes (`--use-sage`),
    optional values (`--listen` alone). ComfyUI takes no positional arguments, so every plain token
    belongs to the option before it."""
    names = names or FLAGS
    given: dict[str, list[str]] = {}
    problems: list[str] = []
    current: str | None = None
    for token in tokens:
        if token == "--":
            problems.append("'--' ends the options (ComfyUI takes no positional arguments)")
            break
        if not _is_option(token):
            if current is None:
                problems.append(f"unrecognized argument {token!r}")
            else:
                given[current].append(token)
            continue
        name, eq, value = token.partition("=")
        flag, problem = _full_name(name, names)
        if problem:
            problems.append(problem)
            current = None
            continue
        if flag in APPEND and flag in given:  # every use counts: their values are joined
            given[flag] = given.pop(flag) + ([value] if eq else [])
        else:
            given.pop(flag, None)  # keep insertion order = order of last use
            given[flag] = [value] if eq else []
        current = None if eq else flag
    return Args(given, tuple(problems))


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NEGATIVE_NUMBER.match(token)


def _full_name(name: str, names: frozenset[str]) -> tuple[str, str | None]:
    if name in names:
        return name, None
    if name.startswith("--"):
        matches = sorted(n for n in names if n.startswith(name))
        if len(matches) == 1:
            return matches[0], None
        if matches:
            return "", f"ambiguous option {name} could match {', '.join(matches)}"
    return "", f"unrecognized option {name}"


def script_index(argv: Sequence[str]) -> int | None:
    """Where the script is in a python command line (`python -u main.py --cpu` -> 2), or None
    when argv is not python running a script (`python -m ...`, `python -c ...`, not python)."""
    if not argv or not _PYTHON.match(posixpath.basename(argv[0])):
        return None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return i + 1 if i + 1 < len(argv) else None
        if arg == "-" or arg in ("--help", "--version"):
            return None
        if arg.startswith("--"):
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        if arg.startswith("-"):
            letters = arg[1:]
            for j, letter in enumerate(letters):
                if letter in "cm":
                    return None
                if letter in "WX":  # takes a value: the rest of this token, or the next one
                    i += 1 if j == len(letters) - 1 else 0
                    break
            i += 1
            continue
        return i
    return None


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
    matched, unsure = [], []
    for pid, argv, cwd, started in (_local_processes() if pod.is_local else _remote_processes(pod)):
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


def _local_processes() -> list[tuple[int, list[str], str | None, float | None]]:
    import psutil

    out = []
    for proc in psutil.process_iter(["cmdline"]):
        argv = proc.info.get("cmdline") or []
        if not any(a.endswith("main.py") for a in argv):
            continue
        try:
            with proc.oneshot():
                cwd, started = _maybe(proc.cwd), _maybe(proc.create_time)
        except psutil.Error:
            continue
        out.append((proc.pid, list(argv), cwd, started))
    return out


def _maybe(read):
    import psutil

    try:
        return read()
    except psutil.Error:
        return None


# Lists the processes whose command line mentions main.py: pid, start (clock ticks after boot),
# working folder and NUL-separated command line (both base64, so any byte survives).
_LIST_SCRIPT = r"""
echo "T $(getconf CLK_TCK 2>/dev/null || echo 100) $(sed -n 's/^btime //p' /proc/stat)"
for f in $(grep -laF main.py /proc/[0-9]*/cmdline 2>/dev/null); do
  d=${f%/cmdline}
  s=$(cat "$d/stat" 2>/dev/null) || continue
  s=${s##*) }
  set -- $s
  printf 'P %s %s %s %s\n' "${d#/proc/}" "${20}" "$(readlink "$d/cwd" | base64 -w0)" "$(base64 -w0 < "$f")"
done
"""


def _remote_processes(pod: Any) -> list[tuple[int, list[str], str | None, float | None]]:
    ran = pod.run("sh", "-c", _LIST_SCRIPT)
    return parse_process_list(ran.stdout)


def parse_process_list(text: str) -> list[tuple[int, list[str], str | None, float | None]]:
    """(pid, argv, cwd, started) from the output of _LIST_SCRIPT."""
    hz, boot, out = 100.0, None, []
    for line in text.splitlines():
        parts = line.split(" ")
        if parts[0] == "T" and len(parts) == 3:
            hz = float(parts[1]) if parts[1].isdigit() else hz
            boot = float(parts[2]) if parts[2].isdigit() else None
        elif parts[0] == "P" and len(parts) == 5 and parts[1].isdigit():
            try:
                cwd = base64.b64decode(parts[3]).decode(errors="replace").rstrip("\n") or None
                argv = base64.b64decode(parts[4]).decode(errors="replace").split("\0")
            except ValueError:
                continue
            if argv and argv[-1] == "":
                argv.pop()
            started = boot + int(parts[2]) / hz if boot is not None and parts[2].isdigit() else None
            out.append((int(parts[1]), argv, cwd, started))
    return out


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
    if pod.is_local:
        status, text, error = _local_request(url, method, payload, limit)
    else:
        status, text, error = _remote_request(pod, url, method, payload, limit)
    return Answer(url, status, _decode(text), error, time.monotonic() - started)


def _decode(text: str | None) -> Any:
    if not text:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def _local_request(url: str, method: str, payload: str | None, limit: float):
    import socket
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, data=payload.encode() if payload is not None else None, method=method,
                                 headers={"Content-Type": "application/json"} if payload is not None else {})
    try:
        with urllib.request.urlopen(req, timeout=limit) as resp:
            return resp.status, resp.read().decode(errors="replace"), None
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace"), None
    except (TimeoutError, socket.timeout):
        return None, None, f"no answer within {limit:g} s"
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, (TimeoutError, socket.timeout)):
            return None, None, f"no answer within {limit:g} s"
        return None, None, str(getattr(exc.reason, "strerror", None) or exc.reason)
    except (OSError, ValueError) as exc:  # connection reset, a reply that is not HTTP
        return None, None, f"{type(exc).__name__}: {exc}"


_STATUS_MARK = "\n@@podcheck-status "

# The fallback where curl is missing: stdlib only, any python 3.
_PY_REQUEST = r"""
import sys, urllib.request, urllib.error
url, method, body, limit = sys.argv[1:5]
req = urllib.request.Request(url, data=body.encode() if body else None, method=method,
                             headers={"Content-Type": "application/json"} if body else {})
try:
    resp = urllib.request.urlopen(req, timeout=float(limit)); code, data = resp.status, resp.read()
except urllib.error.HTTPError as exc:
    code, data = exc.code, exc.read()
except Exception as exc:
    sys.stderr.write("%s: %s\n" % (type(exc).__name__, getattr(exc, "reason", exc))); sys.exit(1)
sys.stdout.write(data.decode("utf-8", "replace") + "\n@@podcheck-status %d" % code)
"""


def _remote_request(pod: Any, url: str, method: str, payload: str | None, limit: float):
    data_args = ["-H", "Content-Type: application/json", "--data-binary", payload] if payload is not None else []
    ran = pod.run("curl", "-sS", "-m", f"{limit:g}", "-X", method, *data_args,
                  "-w", _STATUS_MARK.replace("\n", "\\n") + "%{http_code}", url, timeout=limit + 5)
    if ran.not_found:
        ran = pod.run(pod.config.pod.python, "-c", _PY_REQUEST, url, method, payload or "", f"{limit:g}",
                      timeout=limit + 5)
    text, mark, code = ran.stdout.rpartition(_STATUS_MARK)
    if ran.ok and mark and code.strip().isdigit():
        return int(code), text, None
    if ran.rc == 28 or ran.timed_out or "timed out" in ran.stderr:
        return None, None, f"no answer within {limit:g} s"
    lines = ran.stderr.strip().splitlines()
    return None, None, re.sub(r"^curl: \(\d+\) ", "", lines[-1] if lines else ran.why())[:300]


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
