"""podcheck.toml: discovery, defaults for a RunPod pod, validation and `{placeholder}` expansion.

>>> cfg = load(env={"PODCHECK_WORKSPACE": "/tmp/ws"})
>>> cfg.pod.comfyui_dir
'/tmp/ws/ComfyUI'
"""
from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

#: Every key podcheck knows, with its default. A value's type is its default's type;
#: CHOICES narrows a string key to a fixed set.
DEFAULTS: dict[str, dict[str, Any]] = {
    "pod": {
        "workspace": "/workspace",
        "comfyui_dir": "{workspace}/ComfyUI",
        "python": "{workspace}/venv/bin/python",
        "user": "",
        "users": [],
        "gpu": "required",
        "state_dir": "{workspace}/.podcheck",
        "probe_timeout": 60.0,
        "probe_reuse_seconds": 600.0,  # watch and serve reuse the probe's facts this long (NVML is always fresh)
        "command_timeout": 10.0,
    },
    "torch": {
        "cuda": "12.9",
        "spec": "torch",
        # torchvision and torchaudio are installed with torch, as one set from one index ("" leaves one out)
        "vision_spec": "torchvision",
        "audio_spec": "torchaudio",
        # "auto": PyTorch's index for [torch] cuda (cu129, cu130, cpu ...); "": pip's own index; or a URL
        "index_url": "auto",
    },
    "attention": {"sage": "required", "sage_spec": "sageattention"},
    "comfyui": {
        "enabled": True,
        "port": 8188,
        "listen": "0.0.0.0",
        "repo": "https://github.com/comfyanonymous/ComfyUI",
        "ref": "master",
        "extra_args": [],
        "log": "{state_dir}/comfyui.log",
        "http_timeout": 5.0,
    },
    "sync": {
        "enabled": True,
        "rclone_config": "/root/.config/rclone/rclone.conf",
        "remote": "gdrive",
        "remote_root": "ComfyUI-Output",
        "log": "{state_dir}/sync.log",
        "max_age_minutes": 15.0,
        "process_pattern": "",
        "folders": ["output"],
        "interval_seconds": 60,
        "transfers": 8,
        "checkers": 8,
        "tpslimit": 10,
        "min_age": "30s",
        "mode": "sync",
        "excludes": ["*.tmp", "*.partial"],
        "pass_timeout_seconds": 3600.0,
        "errors_window_minutes": 60.0,
    },
    "memory": {"min_ram_available_gib": 4.0, "min_vram_free_gib": 2.0, "cgroup_root": "/sys/fs/cgroup"},
    "disk": {"min_free_gib": 10.0, "min_free_inodes": 10000},
    "training": {"gpu_util_threshold": 5.0, "stuck_seconds": 300, "roots": ["{workspace}/fluxgym/outputs"],
                 "kill_grace_seconds": 15.0},
    "watch": {
        "interval_seconds": 30.0,
        "select": ["sync.running", "sync.errors", "memory", "comfyui.running", "training.progress"],
        "repairs": ["sync.start", "memory.free", "training.resume", "comfyui.launch"],  # unattended
        "max_attempts_per_hour": 3,
        "backoff_seconds": 60.0,
        "repair_timeout_seconds": 900.0,
        "log": "{state_dir}/watch.log",
    },
    "serve": {"port": 8765, "listen": "127.0.0.1", "cache_seconds": 5.0},
    # Image validation (--profile image): path in the image -> source it was built from (a local
    # checkout, or its name in the manifest); relative sources are relative to the config file.
    "image": {"sources": {}, "manifest": "", "start_scripts": [], "required_flags": []},
    "fix": {
        "background": False,  # `--fix` runs slow repairs detached (as `--background`)
        "base_python": "python3",  # the interpreter the `venv` repair creates the pod venv with
        "ffmpeg_install": ["apt-get", "-o", "DPkg::Lock::Timeout=120", "install", "-y", "-q", "ffmpeg"],
        "pip_args": [],  # extra `pip install` arguments for every install (e.g. --find-links, --no-compile)
        "install_timeout": 1800.0,  # one pip, git or package-manager command
        "launch_timeout": 180.0,  # until a launched ComfyUI answers /system_stats
        "kernel_cache_dir": "/tmp/podcheck-kernel-cache",  # local disk for a launched ComfyUI's Triton/Inductor caches
        "lock_wait_seconds": 1800.0,  # a second fixer waits this long for the first
        "lock_lease_seconds": 120.0,  # a lock whose heartbeat is older than this is taken over
        "legacy_markers": "{workspace}/.install_markers",
        "legacy_state_env": "{workspace}/runpodTools/state.env",
    },
}

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("pod", "gpu"): ("required", "optional", "absent"),
    ("attention", "sage"): ("required", "optional", "off"),
    ("sync", "mode"): ("sync", "copy"),
}

PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


class ConfigError(Exception):
    """A config problem, worded as one line that names the file and the key."""


class Section:
    """One table of the config; keys read as attributes (`cfg.pod.workspace`)."""

    def __init__(self, name: str, values: dict[str, Any]):
        self._name = name
        self.__dict__.update(values)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_")}

    def __repr__(self) -> str:
        return f"Section({self._name!r}, {self.as_dict()!r})"


class Config:
    """The validated, expanded config. `source` is the file it came from, or None for defaults."""

    def __init__(self, data: dict[str, dict[str, Any]], source: str | None):
        self.source = source
        self._data = data
        for name, values in data.items():
            setattr(self, name, Section(name, values))

    def as_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dict(values) for name, values in self._data.items()}


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


def load(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read, validate and expand the config; raise ConfigError with a one-line reason."""
    env = os.environ if env is None else env
    found = find(str(path) if path else None, env)
    raw: dict[str, Any] = {}
    if found is not None:
        raw = _read(found)
    where = str(found) if found else "defaults"
    data = _validate(raw, where)
    if env.get("PODCHECK_WORKSPACE"):
        data["pod"]["workspace"] = env["PODCHECK_WORKSPACE"]
    if env.get("PODCHECK_USER"):
        data["pod"]["user"] = env["PODCHECK_USER"]
    _expand(data, where, env)
    return Config(data, str(found) if found else None)


def _read(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except (PermissionError, IsADirectoryError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({_one_line(str(exc))})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid TOML (not UTF-8 text)") from None


def _validate(raw: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    data = {name: dict(keys) for name, keys in DEFAULTS.items()}
    for section, values in raw.items():
        if section not in DEFAULTS:
            raise ConfigError(f"{where}: unknown section [{_show(section)}] (known: {', '.join(DEFAULTS)})")
        if not isinstance(values, dict):
            raise ConfigError(f"{where}: [{section}] must be a table, got {_type_name(values)}")
        for key, value in values.items():
            if key not in DEFAULTS[section]:
                raise ConfigError(f"{where}: unknown key [{section}] {_show(key)}")
            data[section][key] = _checked(section, key, value, where)
    return data


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
        raise ConfigError(f"{where}: {name} must be one of {', '.join(choices)}, got {_show(value)}")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
        raise ConfigError(f"{where}: {name} must not be negative, got {value}")
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
