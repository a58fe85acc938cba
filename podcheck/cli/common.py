"""What every command shares: the one-line usage failure, config loading, the redactor, common options."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from podcheck import config as config_mod
from podcheck.reports.redact import Redactor


class UsageFailure(Exception):
    """Bad input: printed as one line, exit 2."""


def load_config(path: Optional[Path]) -> config_mod.Config:
    """The config, or a UsageFailure naming the file and the key."""
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as exc:
        raise UsageFailure(str(exc)) from None


def default_redactor(uuids: bool = True) -> Redactor:
    """The Redactor for what this process prints: it knows the secret variables of its environment."""
    return Redactor.from_env(os.environ, uuids=uuids)


def as_str(path: Optional[Path]) -> Optional[str]:
    return str(path) if path else None


ConfigOpt = typer.Option(None, "--config", help="podcheck.toml (default: $PODCHECK_CONFIG, ./podcheck.toml, <workspace>/podcheck.toml)")
HostOpt = typer.Option("local://", "--hosts", help="testinfra host URL of the pod")
SshConfigOpt = typer.Option(None, "--ssh-config", help="ssh_config for ssh:// hosts")
SshIdentityOpt = typer.Option(None, "--ssh-identity-file", help="ssh key for ssh:// hosts")
