"""`podcheck init` (a commented podcheck.toml for a kind of pod) and `podcheck config` (the
effective config: every key, its value and where it came from, redacted)."""
from __future__ import annotations

import json
import os
import time
from enum import Enum
from pathlib import Path
from typing import Any, Optional

import typer

from podcheck.cli.common import ConfigOpt, UsageFailure, default_redactor, load_config
from podcheck.domain.users import invalid_reason
from podcheck.host.files import write_atomic


class Kind(str, Enum):
    gpu = "gpu"
    cpu = "cpu"
    nosync = "nosync"


HEADER = """\
# podcheck.toml for a {what}, written by `podcheck init --kind {kind}`.
# Every key has a default; `podcheck config` shows them all and where each value comes from.
# podcheck finds this file at --config, $PODCHECK_CONFIG, ./podcheck.toml, then <workspace>/podcheck.toml.
"""
POD = """
[pod]
workspace = "/workspace"                # the network volume
python = "{{workspace}}/venv/bin/python" # the pod's interpreter (podcheck probes it, never imports it)
user = "{user}"{user_note}
gpu = "{gpu}"                        # required | optional | absent
"""
GPU = """
[torch]
cuda = "12.9"                           # the torch.version.cuda the pod must have (cu129 wheels run on RTX 5090)
index_url = "https://download.pytorch.org/whl/cu129"

[attention]
sage = "required"                       # ComfyUI runs with --use-sage-attention
"""
CPU = """
[torch]
cuda = "cpu"                            # a CPU build of torch; ComfyUI is launched with --cpu
index_url = "https://download.pytorch.org/whl/cpu"   # torch, torchvision and torchaudio from one index

[attention]
sage = "off"                            # sage kernels need a GPU
"""
SYNC = """
[sync]
enabled = true
rclone_config = "/root/.config/rclone/rclone.conf"
remote = "gdrive"                       # an rclone remote (a Drive with team_drive for a service account)
remote_root = "ComfyUI-Output"
mode = "copy"                           # copy never deletes on the remote; sync mirrors deletions
"""
NOSYNC = """
[sync]
enabled = false                         # no rclone sync on this pod: the sync checks are skipped
"""
WHAT = {Kind.gpu: "GPU pod", Kind.cpu: "CPU pod (no GPU)", Kind.nosync: "GPU pod without sync"}


def template(kind: Kind, user: str = "") -> str:
    """The commented podcheck.toml for `kind` (it loads as it is)."""
    note = "" if user else "                               # the person this pod serves: set it (or $PODCHECK_USER)"
    gpu = "absent" if kind is Kind.cpu else "required"
    parts = [HEADER.format(what=WHAT[kind], kind=kind.value), POD.format(user=user, user_note=note, gpu=gpu),
             CPU if kind is Kind.cpu else GPU, NOSYNC if kind is Kind.nosync else SYNC]
    return "".join(parts)


def init(
    kind: Kind = typer.Option(Kind.gpu, "--kind", help="what kind of pod"),
    user: str = typer.Option("", "--user", help="the person this pod serves ([pod] user)"),
    output: Path = typer.Option(Path("podcheck.toml"), "-o", "--output", help="where to write it"),
    force: bool = typer.Option(False, "--force", help="replace an existing file (it is backed up first)"),
) -> None:
    """Write a commented podcheck.toml for a GPU pod, a CPU pod, or a pod without sync."""
    if user and invalid_reason(user):
        raise UsageFailure(f"--user {user!r}: {invalid_reason(user)}")
    if output.exists() or output.is_symlink():
        if not force:
            raise UsageFailure(f"{output} exists; use --force to replace it (it is backed up first)")
        backup = output.with_name(f"{output.name}.bak-{time.strftime('%Y%m%dT%H%M%S')}")
        os.replace(output, backup)
        typer.echo(f"podcheck: backed up {output} to {backup}", err=True)
    try:
        write_atomic(output, template(kind, user))
    except OSError as exc:
        raise UsageFailure(f"cannot write {output}: {exc.strerror or exc}") from None
    typer.echo(f"podcheck: wrote {output} for a {WHAT[kind]}; check it with `podcheck config --config {output}`")


def show_config(
    config: Optional[Path] = ConfigOpt,
    as_json: bool = typer.Option(False, "--json", help="print {section: {key: {value, origin}}} as JSON"),
) -> None:
    """The effective config: every key, its value and where it came from (default, file, env), redacted."""
    cfg = load_config(config)
    data: dict[str, dict[str, Any]] = {
        section: {key: {"value": value, "origin": cfg.origin(section, key)} for key, value in values.items()}
        for section, values in cfg.as_dict().items()}
    if as_json:
        text = json.dumps({"config": cfg.source, "sections": data}, indent=2) + "\n"
    else:
        lines = [f"# config: {cfg.source or 'no file found, defaults'}"]
        for section, values in data.items():
            lines += ["", f"[{section}]"]
            rows = [(f"{key} = {_toml(v['value'])}", v["origin"]) for key, v in values.items()]
            width = max(len(r[0]) for r in rows)
            lines += [f"{text:<{width}}  # {origin}" for text, origin in rows]
        text = "\n".join(lines) + "\n"
    default_redactor().write(None, text)


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return json.dumps(value)

