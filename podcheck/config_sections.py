"""podcheck.toml's schema: one dataclass per section, each field a key with its type and its default
for a RunPod pod, and the keys that take one of a few values (CHOICES). podcheck.config reads, checks
and expands a file against it; DEFAULTS, the plain form, is derived from the dataclasses.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


def _list(*items: str) -> Any:
    return field(default_factory=lambda: list(items))


@dataclass
class PodSection:
    workspace: str = "/workspace"
    comfyui_dir: str = "{workspace}/ComfyUI"
    python: str = "{workspace}/venv/bin/python"
    user: str = ""
    users: list[str] = _list()
    gpu: str = "required"
    state_dir: str = "{workspace}/.podcheck"
    probe_timeout: float = 60.0
    probe_reuse_seconds: float = 600.0  # watch and serve reuse the probe's facts this long (NVML is always fresh)
    command_timeout: float = 10.0


@dataclass
class TorchSection:
    cuda: str = "12.9"
    spec: str = "torch"
    # torchvision and torchaudio are installed with torch, as one set from one index ("" leaves one out)
    vision_spec: str = "torchvision"
    audio_spec: str = "torchaudio"
    # "auto": PyTorch's index for [torch] cuda (cu129, cu130, cpu ...); "": pip's own index; or a URL
    index_url: str = "auto"


@dataclass
class AttentionSection:
    sage: str = "required"
    sage_spec: str = "sageattention"


@dataclass
class ComfyUISection:
    enabled: bool = True
    port: int = 8188
    listen: str = "0.0.0.0"
    repo: str = "https://github.com/comfyanonymous/ComfyUI"
    ref: str = "master"
    extra_args: list[str] = _list()
    log: str = "{state_dir}/comfyui.log"
    http_timeout: float = 5.0


@dataclass
class SyncSection:
    enabled: bool = True
    rclone_config: str = "/root/.config/rclone/rclone.conf"
    remote: str = "gdrive"
    remote_root: str = "ComfyUI-Output"
    log: str = "{state_dir}/sync.log"
    max_age_minutes: float = 15.0
    process_pattern: str = ""
    folders: list[str] = _list("output")
    interval_seconds: int = 60
    transfers: int = 8
    checkers: int = 8
    tpslimit: int = 10
    min_age: str = "30s"
    mode: str = "copy"  # copy never deletes on the remote; sync mirrors (see syncloop: what protects the remote)
    max_delete: int = 100  # sync mode: at most this many remote deletions per transfer (rclone --max-delete)
    excludes: list[str] = _list("*.tmp", "*.partial")
    pass_timeout_seconds: float = 3600.0
    errors_window_minutes: float = 60.0


@dataclass
class MemorySection:
    min_ram_available_gib: float = 4.0
    min_vram_free_gib: float = 2.0
    cgroup_root: str = "/sys/fs/cgroup"


@dataclass
class DiskSection:
    min_free_gib: float = 10.0
    min_free_inodes: int = 10000


@dataclass
class TrainingSection:
    gpu_util_threshold: float = 5.0
    stuck_seconds: int = 300
    roots: list[str] = _list("{workspace}/fluxgym/outputs")
    kill_grace_seconds: float = 15.0


@dataclass
class WatchSection:
    interval_seconds: float = 30.0
    select: list[str] = _list("sync.running", "sync.errors", "memory", "comfyui.running", "training.progress")
    repairs: list[str] = _list("sync.start", "memory.free", "training.resume", "comfyui.launch")  # unattended
    max_attempts_per_hour: int = 3
    backoff_seconds: float = 60.0
    repair_timeout_seconds: float = 900.0
    log: str = "{state_dir}/watch.log"


@dataclass
class ServeSection:
    port: int = 8765
    listen: str = "127.0.0.1"
    cache_seconds: float = 5.0


@dataclass
class ImageSection:
    """Image validation (--profile image): path in the image -> source it was built from (a local
    checkout, or its name in the manifest); relative sources are relative to the config file."""

    sources: dict[str, str] = field(default_factory=dict)
    manifest: str = ""
    start_scripts: list[str] = _list()
    required_flags: list[str] = _list()


@dataclass
class FixSection:
    background: bool = False  # `--fix` runs slow repairs detached (as `--background`)
    base_python: str = "python3"  # the interpreter the `venv` repair creates the pod venv with
    ffmpeg_install: list[str] = _list("apt-get", "-o", "DPkg::Lock::Timeout=120", "install", "-y", "-q", "ffmpeg")
    pip_args: list[str] = _list()  # extra `pip install` arguments for every install (e.g. --find-links, --no-compile)
    install_timeout: float = 1800.0  # one pip, git or package-manager command
    launch_timeout: float = 180.0  # until a launched ComfyUI answers /system_stats
    kernel_cache_dir: str = "/tmp/podcheck-kernel-cache"  # local disk for a launched ComfyUI's Triton/Inductor caches
    lock_wait_seconds: float = 1800.0  # a second fixer waits this long for the first
    lock_lease_seconds: float = 120.0  # a lock whose heartbeat is older than this is taken over
    legacy_markers: str = "{workspace}/.install_markers"
    legacy_state_env: str = "{workspace}/runpodTools/state.env"


#: The sections of podcheck.toml and their types: every key, with its default and its type.
SECTIONS: dict[str, type] = {
    "pod": PodSection, "torch": TorchSection, "attention": AttentionSection, "comfyui": ComfyUISection,
    "sync": SyncSection, "memory": MemorySection, "disk": DiskSection, "training": TrainingSection,
    "watch": WatchSection, "serve": ServeSection, "image": ImageSection, "fix": FixSection,
}
#: Every key podcheck knows, with its default (read from SECTIONS).
DEFAULTS: dict[str, dict[str, Any]] = {name: dataclasses.asdict(cls()) for name, cls in SECTIONS.items()}

CHOICES: dict[tuple[str, str], tuple[str, ...]] = {
    ("pod", "gpu"): ("required", "optional", "absent"),
    ("attention", "sage"): ("required", "optional", "off"),
    ("sync", "mode"): ("sync", "copy"),
}
