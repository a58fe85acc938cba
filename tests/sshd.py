"""A real sshd on 127.0.0.1 for tests of remote hosts (key auth as root, multiplexed client)."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Sshd:
    port: int
    ssh_config: Path
    pidfile: Path
    root: Path

    @property
    def url(self) -> str:
        return f"ssh://root@127.0.0.1:{self.port}"

    def stop(self) -> None:
        subprocess.run(["ssh", "-F", str(self.ssh_config), "-O", "exit", "pod"], capture_output=True, timeout=10)
        try:
            os.kill(int(self.pidfile.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def keyed_root(prefix: str) -> Path:
    """A short new /tmp folder (ssh's ControlPath must fit a unix socket name) with a host key, a
    client key and the authorized_keys that lets the client key in."""
    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    for key in ("hostkey", "clientkey"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)], check=True)
    (root / "authorized_keys").write_text((root / "clientkey.pub").read_text())
    (root / "authorized_keys").chmod(0o644)
    return root


def sshd_config(root: Path, port: int | str, *extra: str) -> str:
    """sshd on 127.0.0.1 taking root by key only (the keys of `keyed_root`); `extra` lines follow."""
    return f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root}/hostkey
AuthorizedKeysFile {root}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
LogLevel ERROR
""" + "".join(f"{line}\n" for line in extra)


def ssh_config(root: Path, known_hosts: str, *extra: str) -> str:
    """The client's `Host *` block: the client key of `keyed_root`, no host key questions, no prompts;
    `extra` lines (how it multiplexes) follow."""
    return f"""Host *
  IdentityFile {root}/clientkey
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile {known_hosts}
  BatchMode yes
  LogLevel ERROR
""" + "".join(f"  {line}\n" for line in extra) + "  KexAlgorithms curve25519-sha256\n"


def start() -> Sshd:
    """Start sshd with its keys, config and logs in a short new /tmp folder; raise RuntimeError when
    it cannot run."""
    if not os.path.exists(SSHD):
        raise RuntimeError("openssh-server is not installed")
    root = keyed_root("sshd-")
    port = free_port()
    pidfile = root / "sshd.pid"
    (root / "sshd_config").write_text(sshd_config(root, port, f"PidFile {pidfile}"))
    ssh_config_path = root / "ssh_config"
    ssh_config_path.write_text(ssh_config(root, f"{root}/known_hosts", "ControlMaster auto",
                                          f"ControlPath {root}/cm-%C", "ControlPersist 60s"))
    os.makedirs("/run/sshd", exist_ok=True)
    subprocess.run([SSHD, "-f", str(root / "sshd_config"), "-E", str(root / "sshd.log")], check=True, timeout=20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return Sshd(port, ssh_config_path, pidfile, root)
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {port}: {(root / 'sshd.log').read_text()[-500:]}")
