"""podcheck.toml: discovery, reading, validation against the typed sections (podcheck.config_sections)
and `{placeholder}` expansion, and where each value came from.

>>> cfg = load(env={"PODCHECK_WORKSPACE": "/tmp/ws"})
>>> cfg.pod.comfyui_dir
'/tmp/ws/ComfyUI'
>>> cfg.origin("pod", "workspace")
'env PODCHECK_WORKSPACE'
"""
from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import math
import os
import re
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from podcheck.config_sections import (
    CHOICES,
    DEFAULTS,
    SECTIONS,
    AttentionSection,
    ComfyUISection,
    DiskSection,
    FixSection,
    ImageSection,
    MemorySection,
    PodSection,
    ServeSection,
    SyncSection,
    TorchSection,
    TrainingSection,
    WatchSection,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

MAX_BYTES = 1 << 20  # a podcheck.toml is small; anything larger is not one


#: Environment variables that override a key (after the file).
ENV_KEYS: dict[str, tuple[str, str]] = {"PODCHECK_WORKSPACE": ("pod", "workspace"), "PODCHECK_USER": ("pod", "user")}

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class ConfigError(Exception):
    """A config problem, worded as one line that names the file and the key."""


@dataclass
class Config:
    """The validated, expanded config. `source` is the file it came from, or None for defaults."""

    pod: PodSection = field(default_factory=PodSection)
    torch: TorchSection = field(default_factory=TorchSection)
    attention: AttentionSection = field(default_factory=AttentionSection)
    comfyui: ComfyUISection = field(default_factory=ComfyUISection)
    sync: SyncSection = field(default_factory=SyncSection)
    memory: MemorySection = field(default_factory=MemorySection)
    disk: DiskSection = field(default_factory=DiskSection)
    training: TrainingSection = field(default_factory=TrainingSection)
    watch: WatchSection = field(default_factory=WatchSection)
    serve: ServeSection = field(default_factory=ServeSection)
    image: ImageSection = field(default_factory=ImageSection)
    fix: FixSection = field(default_factory=FixSection)
    source: str | None = None
    origins: dict[str, str] = field(default_factory=dict)  # "section.key" -> "file" | "env NAME" (else default)

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}

    def origin(self, section: str, key: str) -> str:
        """Where a value came from: 'default', 'file' or 'env NAME'."""
        return self.origins.get(f"{section}.{key}", "default")


def from_data(data: dict[str, dict[str, Any]], source: str | None = None) -> Config:
    """A Config again from `Config.as_dict()` (validated, expanded data), e.g. sent to another process."""
    return Config(**{name: SECTIONS[name](**values) for name, values in data.items()}, source=source)


def find(explicit: str | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The config file to read: `--config`, `$PODCHECK_CONFIG`, ./podcheck.toml, <workspace>/podcheck.toml."""
    env = os.environ if env is None else env
    for given in (explicit, env.get("PODCHECK_CONFIG")):
        if given:
            return Path(given)
    for candidate in (Path("podcheck.toml"), Path(env.get("PODCHECK_WORKSPACE") or "/workspace") / "podcheck.toml"):
        if candidate.is_file():
            return candidate
    return None


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None,
         host: Sequence[str] = (), host_vars: Mapping[str, Any] | None = None) -> Config:
    """Read, validate and expand the config; raise ConfigError with a one-line reason.

    `host` names one pod of a fleet (its inventory name, URL, hostname): then, in this order, each
    later layer winning, Ansible `podcheck_<section>_<key>` host vars (`host_vars`) and the
    `[hosts."<name or glob>"]` tables that match one of its names (file order) apply on top of the
    file's own tables; PODCHECK_WORKSPACE / PODCHECK_USER still win over all of them.
    """
    env = os.environ if env is None else env
    found = find(str(path) if path else None, env)
    raw: dict[str, Any] = _read(found) if found is not None else {}
    where = str(found) if found else "defaults"
    tables = _host_tables(raw.pop(HOSTS, {}), where)
    if host or host_vars:
        raw = _for_host(raw, list(host), host_vars or {}, tables, where)
    data = _validate(raw, where)
    origins = {f"{s}.{k}": "file" for s, keys in raw.items() for k in keys}
    for var, (section, key) in ENV_KEYS.items():
        if env.get(var):
            data[section][key] = env[var]
            origins[f"{section}.{key}"] = f"env {var}"
    _expand(data, where, env)
    sections = {name: SECTIONS[name](**values) for name, values in data.items()}
    return Config(**sections, source=str(found) if found else None, origins=origins)


HOSTS = "hosts"
VAR_PREFIX = "podcheck_"


def _host_tables(tables: Any, where: str) -> dict[str, dict[str, Any]]:
    """`[hosts."<glob>".<section>]` tables, each checked like the top level (a typo fails every run)."""
    if not isinstance(tables, dict):
        raise ConfigError(f"{where}: [hosts] must be a table of host tables, got {_type_name(tables)}")
    for pattern, sections in tables.items():
        if not isinstance(sections, dict):
            raise ConfigError(f"{where}: [hosts.{_show(pattern)}] must be a table, got {_type_name(sections)}")
        _validate(sections, f"{where} [hosts.{_show(pattern)}]")
    return tables


def _for_host(raw: dict[str, Any], names: list[str], host_vars: Mapping[str, Any],
              tables: dict[str, dict[str, Any]], where: str) -> dict[str, Any]:
    """The file's tables with this host's Ansible vars and matching [hosts] tables laid over them."""
    merged = {section: dict(keys) for section, keys in raw.items() if isinstance(keys, dict)}
    merged.update({k: v for k, v in raw.items() if not isinstance(v, dict)})
    for var, value in host_vars.items():
        if not var.startswith(VAR_PREFIX):
            continue
        section, _, key = var[len(VAR_PREFIX):].partition("_")
        if section not in DEFAULTS or key not in DEFAULTS[section]:
            raise ConfigError(f"{where}: Ansible host var {_show(var)} names no podcheck setting"
                              f" (podcheck_<section>_<key>, e.g. podcheck_pod_workspace)")
        merged.setdefault(section, {})[key] = value
    for pattern, sections in tables.items():
        if any(fnmatch.fnmatchcase(name, pattern) for name in names):
            for section, keys in sections.items():
                merged.setdefault(section, {}).update(keys)
    return merged


def _read(path: Path) -> dict[str, Any]:
    """A regular file of bounded size, parsed as TOML (a FIFO or a device would hang or never end)."""
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: not a regular file")
        if info.st_size > MAX_BYTES:
            raise ConfigError(f"{path}: {info.st_size} bytes is too large for a config file (at most {MAX_BYTES})")
        with open(path, "rb") as fh:
            text = fh.read(MAX_BYTES + 1)
        return tomllib.loads(text.decode("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (PermissionError, IsADirectoryError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({_one_line(str(exc))})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text)") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid TOML (values nested too deeply)") from None


def _validate(raw: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    data = {name: dict(keys) for name, keys in DEFAULTS.items()}
    for section, values in raw.items():
        if section not in DEFAULTS:
            raise ConfigError(f"{where}: unknown section [{_show(section)}]{_did_you_mean(section, DEFAULTS)}"
                              f" (known: {', '.join(DEFAULTS)}, hosts)")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table, got {_type_name(values)}")
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ConfigError(f"{where}: unknown key [{section}] {_show(key)}{_did_you_mean(key, DEFAULTS[section])}")
            data[section][key] = _checked(section, key, value, where)
    return data


def _did_you_mean(word: Any, known: Any) -> str:
    close = difflib.get_close_matches(str(word), list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


#: Limits where 0 would turn the limit off or make a loop spin (besides every *timeout* and *interval*).
POSITIVE = {"lock_lease_seconds", "max_age_minutes", "errors_window_minutes", "stuck_seconds"}


def _must_be_positive(key: str) -> bool:
    return "timeout" in key or "interval" in key or key in POSITIVE


def _checked(section: str, key: str, value: Any, where: str) -> Any:
    default = DEFAULTS[section][key]
    name = f"[{section}] {key}"
    if isinstance(default, bool):
        ok = isinstance(value, bool)
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(default, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, str):
        ok = isinstance(value, str)
    elif isinstance(default, list):
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
    else:  # dict of str -> str
        ok = isinstance(value, dict) and all(isinstance(v, str) for v in value.values())
    if not ok:
        raise ConfigError(f"{where}: {name} must be {_type_name(default, article=True)}, got {_type_name(value)}")
    choices = CHOICES.get((section, key))
    if choices and value not in choices:
        raise ConfigError(f"{where}: {name} must be one of {', '.join(choices)}, got {_show(value)}"
                          f"{_did_you_mean(value, choices)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {name} must be a finite number, got {value}")
        if value < 0:
            raise ConfigError(f"{where}: {name} must not be negative, got {value}")
        if value == 0 and _must_be_positive(key):
            raise ConfigError(f"{where}: {name} must be more than 0 (0 would turn the limit off), got {value}")
    return value


def _expand(data: dict[str, dict[str, Any]], where: str, env: Mapping[str, str]) -> None:
    """Replace {workspace}, {state_dir}, {comfyui_dir}, {home} in every string value."""
    known = {"home": env.get("HOME") or str(Path.home())}
    order = [("workspace", "pod"), ("state_dir", "pod"), ("comfyui_dir", "pod")]

    def expand(text: str, name: str) -> str:
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in known:
                raise ConfigError(f"{where}: {name} uses unknown placeholder {{{m.group(1)}}}"
                                  f" (known: {', '.join('{' + k + '}' for k in known)})")
            return known[m.group(1)]
        return PLACEHOLDER.sub(sub, text)

    for key, section in order:
        known[key] = expand(data[section][key], f"[{section}] {key}")
        data[section][key] = known[key]
    for section, values in data.items():
        for key, value in values.items():
            name = f"[{section}] {key}"
            if isinstance(value, str):
                values[key] = expand(value, name)
            elif isinstance(value, list):
                values[key] = [expand(v, name) for v in value]
            elif isinstance(value, dict):
                values[key] = {expand(k, name): expand(v, name) for k, v in value.items()}


def _type_name(value: Any, article: bool = False) -> str:
    names = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
             list: "a list of strings", dict: "a table of strings"}
    for typ, label in names.items():
        if type(value) is typ:
            return label if article else label.split(" ", 1)[1]
    return type(value).__name__


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _one_line(text: str) -> str:
    return " ".join(text.split())
