"""One ssh connection per host, whatever the user's ssh_config says, closed at the end.

podcheck hands ssh a wrapper config: a `Host *` block with ControlMaster/ControlPath/
ControlPersist (ssh takes the first value it reads, so these beat the user's), then `Include` of
the user's config (or ~/.ssh/config and /etc/ssh/ssh_config, which `-F` would otherwise skip).
Every master lives under one private folder; `close()` asks each to exit.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

PERSIST_SECONDS = 300  # a master outlives a crashed run by at most this long
DEFAULT_CONFIGS = ("~/.ssh/config", "/etc/ssh/ssh_config")


class Multiplexer:
    """Wrapper ssh_configs sharing one folder of ControlMaster sockets."""

    def __init__(self) -> None:
        # short: a unix socket path must stay under ~108 bytes, and %C is 40 characters
        self.root = Path(tempfile.mkdtemp(prefix="pcmux-", dir="/tmp"))
        self._wrappers: dict[str | None, str] = {}

    def wrap(self, user_config: str | None) -> str:
        """The wrapper ssh_config for `user_config` (None: the configs ssh reads by default)."""
        if user_config not in self._wrappers:
            includes = [os.path.abspath(user_config)] if user_config else \
                [os.path.expanduser(p) for p in DEFAULT_CONFIGS if os.path.exists(os.path.expanduser(p))]
            path = self.root / f"ssh_config.{len(self._wrappers)}"
            lines = ["Host *", "  ControlMaster auto", f"  ControlPath {self.root}/%C",
                     f"  ControlPersist {PERSIST_SECONDS}", "  ServerAliveInterval 5", "  ServerAliveCountMax 3"]
            lines += [f'  Include "{inc}"' for inc in includes]
            path.write_text("\n".join(lines) + "\n")
            self._wrappers[user_config] = str(path)
        return self._wrappers[user_config]

    def sockets(self) -> list[Path]:
        return [p for p in self.root.iterdir() if p.is_socket()] if self.root.exists() else []

    def close(self) -> None:
        """Ask every master to exit (`ssh -O exit`), then remove the folder."""
        for sock in self.sockets():
            try:
                subprocess.run(["ssh", "-o", f"ControlPath={sock}", "-O", "exit", "podcheck-mux"],
                               capture_output=True, timeout=10, stdin=subprocess.DEVNULL)
            except (OSError, subprocess.TimeoutExpired):
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> "Multiplexer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def uses_ssh(spec: str) -> bool:
    """Whether testinfra runs this host through the ssh command (ssh://, safe-ssh://)."""
    return spec.split("://", 1)[0] in ("ssh", "safe-ssh") if "://" in spec else False
