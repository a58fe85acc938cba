"""rclone as podcheck reads it: the config (through the host, secrets redacted), remote chains,
Google Drive rules, file modes, and rclone command lines.

rclone 1.60 (Debian bookworm) has no `config redacted`, so the config is read with
`rclone config dump` (JSON, secrets in clear) and redacted here before anything is shown.

>>> parse_remote("gdrive:ComfyUI-Output/output/alice")
('gdrive', 'ComfyUI-Output/output/alice')
>>> parse_transfer(["rclone", "sync", "--transfers", "8", "/w/output", "gdrive:out"])
Transfer(verb='sync', src='/w/output', dst='gdrive:out')
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Iterable

#: Config keys whose values are secrets (token, client_secret, service_account_credentials, pass...).
SECRET_KEY = re.compile(r"token|secret|credentials|^pass|password|key_pem|private_key", re.I)
MASK = "***"

_LINE_SECRETS = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S), "[private key redacted]"),
    (re.compile(r'("(?:[a-z_]*token|client_secret|private_key(?:_id)?|password|pass)"\s*:\s*)"[^"]*"', re.I), r'\1"***"'),
    (re.compile(r"\b((?:[a-z_]*token|client_secret|password|pass)\s*[=:]\s*)[^\s,;&\"'{\[]+", re.I), r"\1***"),
    (re.compile(r"\bya29\.[A-Za-z0-9._-]+"), "ya29.***"),
    (re.compile(r"\b1//[A-Za-z0-9_-]{20,}"), "1//***"),
    (re.compile(r"(Bearer\s+)[A-Za-z0-9._~+/-]+=*", re.I), r"\1***"),
]

#: Flags of rclone that take a value as the next argument (the rest are treated as switches).
VALUE_FLAGS = frozenset("""
--config --transfers --checkers --tpslimit --tpslimit-burst --min-age --max-age --min-size --max-size
--exclude --include --filter --exclude-from --include-from --filter-from --files-from --log-file
--log-level --bwlimit --stats --stats-log-level --retries --retries-sleep --low-level-retries --timeout
--contimeout --backup-dir --suffix --max-transfer --cutoff-mode --order-by --rc-addr --user-agent
--drive-chunk-size --drive-team-drive --drive-root-folder-id --buffer-size --max-depth
--multi-thread-streams --multi-thread-cutoff --track-renames-strategy --compare-dest --copy-dest
--dedupe-mode --max-backlog --max-duration --cache-dir --temp-dir --password-command
--exclude-if-present --drive-service-account-file --header --header-upload
""".split())

TRANSFER_VERBS = ("sync", "copy", "move", "bisync")


class RcloneError(Exception):
    """The rclone config could not be read; the text is one line, without secrets."""


def redact(value: Any) -> Any:
    """A copy of a config dump (or any JSON value) with every secret value replaced by ***."""
    if isinstance(value, dict):
        return {k: (MASK if SECRET_KEY.search(str(k)) and v not in ("", None) else redact(v))
                for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def redact_line(text: str) -> str:
    """A log line or error text with tokens, passwords and private keys masked."""
    for pattern, replacement in _LINE_SECRETS:
        text = pattern.sub(replacement, text)
    return text


def dump(pod: Any, path: str) -> dict[str, dict[str, Any]]:
    """Every remote of the config at `path` (`rclone config dump` on the host); RcloneError when unreadable.

    The result holds secrets in clear: pass it through redact() before showing any of it.
    """
    if not pod.exists(path):
        raise RcloneError(f"rclone config {path} does not exist")
    ran = pod.run("rclone", "config", "dump", "--config", path,
                  env={"RCLONE_ASK_PASSWORD": "false", "RCLONE_CONFIG": path})
    if ran.not_found:
        raise RcloneError("rclone is not installed on the pod (not on PATH)")
    if not ran.ok:
        raise RcloneError(f"cannot read rclone config {path}: {redact_line(ran.why())}")
    try:
        data = json.loads(ran.stdout or "{}")
    except ValueError:
        raise RcloneError(f"rclone config dump of {path} printed no JSON") from None
    if not isinstance(data, dict):
        raise RcloneError(f"rclone config dump of {path} printed no JSON object")
    return {str(k): v for k, v in data.items() if isinstance(v, dict)}


def parse_remote(spec: str) -> tuple[str | None, str]:
    """'gdrive:a/b' -> ('gdrive', 'a/b'); a local path -> (None, path)."""
    if spec.startswith(("/", ".", "~")) or ":" not in spec:
        return None, spec
    name, _, rest = spec.partition(":")
    if "/" in name or "\\" in name:
        return None, spec
    return name, rest


def chain(remotes: dict[str, dict[str, Any]], name: str) -> list[tuple[str, dict[str, Any]]]:
    """`name` and the remotes it wraps (alias, crypt, union...: their `remote`/`upstreams`), outermost first."""
    out: list[tuple[str, dict[str, Any]]] = []
    todo = [name]
    while todo and len(out) < 16:
        current = todo.pop(0)
        section = remotes.get(current)
        if section is None or any(current == seen for seen, _ in out):
            continue
        out.append((current, section))
        targets = [section.get("remote", "")] + str(section.get("upstreams", "")).split()
        for target in targets:
            inner, _ = parse_remote(str(target).split("=", 1)[-1]) if target else (None, "")
            if inner and inner in remotes:
                todo.append(inner)
    return out


def service_account_problem(text: str) -> str | None:
    """Why `text` is not a Google service-account key (JSON), or None when it is. Never echoes the text."""
    try:
        data = json.loads(text)
    except ValueError:
        return "is not JSON"
    if not isinstance(data, dict):
        return "is not a JSON object"
    if data.get("type") != "service_account":
        return f"is JSON of type {str(data.get('type'))[:40]!r}, not 'service_account'"
    missing = [k for k in ("client_email", "private_key") if not data.get(k)]
    return f"lacks {', '.join(missing)}" if missing else None


def file_mode(pod: Any, path: str) -> int | None:
    """The permission bits of `path` on the host (following links), or None when it cannot be stat'ed."""
    ran = pod.run("stat", "-L", "-c", "%a", path)
    try:
        return int(ran.stdout.strip(), 8) if ran.ok else None
    except ValueError:
        return None


def readable_by_others(mode: int) -> bool:
    return bool(mode & 0o044)


def expand_path(pod: Any, path: str, config_path: str) -> str:
    """Expand a leading ~ and $VAR / ${VAR} (as rclone does) using the host's environment."""
    import posixpath

    def var(name: str) -> str:
        if name == "RCLONE_CONFIG_DIR":
            return posixpath.dirname(config_path)
        ran = pod.run("printenv", name)
        return ran.stdout.rstrip("\n") if ran.ok else ""

    if path.startswith("~/") or path == "~":
        path = var("HOME") + path[1:]
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)",
                  lambda m: var(m.group(1) or m.group(2)), path)


def drive_problems(pod: Any, name: str, section: dict[str, Any], config_path: str) -> list[str]:
    """What is wrong with one `type = drive` remote for unattended sync; [] when nothing is."""
    problems: list[str] = []
    team_drive = str(section.get("team_drive") or "").strip()
    root_folder = str(section.get("root_folder_id") or "").strip()
    sa_file = str(section.get("service_account_file") or "").strip()
    sa_inline = str(section.get("service_account_credentials") or "").strip()
    drives_cmd = f"`rclone backend drives {name}:`"
    if team_drive and root_folder:
        problems.append(
            f"[{name}] sets both team_drive and root_folder_id = {root_folder}: rclone uses root_folder_id and "
            f"ignores the Shared Drive; empty root_folder_id")
    if (sa_file or sa_inline) and not team_drive:
        if root_folder:
            problems.append(
                f"[{name}] uses root_folder_id = {root_folder} with a service account instead of team_drive: "
                "a service account has no storage of its own (Google answers storageQuotaExceeded); set team_drive "
                f"to the Shared Drive ID ({drives_cmd} lists them) and empty root_folder_id")
        else:
            problems.append(
                f"[{name}] has no team_drive: a service account has no storage of its own (Google answers "
                f"storageQuotaExceeded); set team_drive to the Shared Drive ID ({drives_cmd} lists them)")
    if sa_file:
        path = expand_path(pod, sa_file, config_path)
        text = pod.read_text(path)
        if text is None:
            gone = not pod.exists(path)
            problems.append(f"[{name}] service_account_file {path} " + (
                "does not exist" if gone else "cannot be read"))
        else:
            why = service_account_problem(text)
            if why:
                problems.append(f"[{name}] service_account_file {path} {why}")
            mode = file_mode(pod, path)
            if mode is not None and readable_by_others(mode):
                problems.append(f"service-account key {path} is readable by group/others (mode {mode:03o}): "
                                f"chmod 600 {path}")
    return problems


@dataclass(frozen=True)
class Transfer:
    """One rclone transfer command: `rclone <verb> <src> <dst>`."""

    verb: str
    src: str
    dst: str


def parse_transfer(argv: Iterable[str]) -> Transfer | None:
    """The verb, source and destination of an rclone sync/copy/move/bisync argv, or None."""
    args = list(argv)
    if not args or args[0].rsplit("/", 1)[-1] != "rclone":
        return None
    positional: list[str] = []
    i = 1
    while i < len(args):
        arg = args[i]
        if arg.startswith("-") and arg != "-":
            if "=" not in arg and arg in VALUE_FLAGS:
                i += 1  # its value
        else:
            positional.append(arg)
        i += 1
    if len(positional) < 3 or positional[0] not in TRANSFER_VERBS:
        return None
    return Transfer(positional[0], positional[1], positional[2])


# --- the sync log ---------------------------------------------------------------------------------

#: What sync.errors looks for in a sync log, by kind.
LOG_PROBLEMS = {
    "quota": re.compile(r"storageQuotaExceeded|do not have storage quota|quotaExceeded", re.I),
    "duplicates": re.compile(r"Duplicate object found", re.I),
    "auth": re.compile(r"invalid_grant|oauth2: cannot fetch token|couldn't fetch token|token (has been )?expired"
                       r"|unauthorized_client|invalid_client|401 Unauthorized|error opening service account"
                       r"|private key should be a PEM|failed to create oauth client|failed to configure token", re.I),
}
_LOG_TIME = re.compile(r"^(\d{4})/(\d{2})/(\d{2}) (\d{2}):(\d{2}):(\d{2})")
_LOOP_LINE = re.compile(r"podcheck-syncloop: \S+ \S+: rclone \S+ \S+ (\S+)$")


def log_time(line: str) -> float | None:
    """The local time an rclone log line starts with ("2006/01/02 15:04:05"), as epoch seconds."""
    import time

    m = _LOG_TIME.match(line)
    if not m:
        return None
    try:
        return time.mktime(tuple(int(g) for g in m.groups()) + (0, 0, -1))
    except (OverflowError, ValueError):
        return None


def log_problems(text: str, since: float) -> dict[str, list[tuple[str, str | None]]]:
    """{kind: [(line, destination being synced or None)]} for lines of `text` not older than `since`.

    Lines without a timestamp count as recent; the destination comes from the managed loop's
    "podcheck-syncloop: <user> <folder>: rclone sync SRC DST" line before them."""
    found: dict[str, list[tuple[str, str | None]]] = {}
    destination: str | None = None
    for line in text.splitlines():
        loop = _LOOP_LINE.search(line)
        if loop:
            destination = loop.group(1)
            continue
        t = log_time(line)
        if t is not None and t < since:
            continue
        for kind, pattern in LOG_PROBLEMS.items():
            if pattern.search(line):
                found.setdefault(kind, []).append((line.strip(), destination))
                break
    return found
