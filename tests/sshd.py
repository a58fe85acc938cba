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


def start() -> Sshd:
    """Start sshd with its keys, config and logs in a short new /tmp folder (ssh's ControlPath must
    fit a unix socket name); raise RuntimeError when it cannot run."""
    if not os.path.exists(SSHD):
        raise RuntimeError("openssh-server is not installed")
    root = Path(tempfile.mkdtemp(prefix="sshd-", dir="/tmp"))
    for key in ("hostkey", "clientkey"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(root / key)], check=True)
    (root / "authorized_keys").write_text((root / "clientkey.pub").read_text())
    (root / "authorized_keys").chmod(0o644)
    port = free_port()
    pidfile = root / "sshd.pid"
    (root / "sshd_config").write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {root}/hostkey
PidFile {pidfile}
AuthorizedKeysFile {root}/authorized_keys
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
UsePAM no
StrictModes no
LogLevel ERROR
""")
    ssh_config = root / "ssh_config"
    ssh_config.write_text(f"""Host *
  IdentityFile {root}/clientkey
  IdentitiesOnly yes
  StrictHostKeyChecking no
  UserKnownHostsFile {root}/known_hosts
  BatchMode yes
  LogLevel ERROR
  ControlMaster auto
  ControlPath {root}/cm-%C
  ControlPersist 60s
  KexAlgorithms curve25519-sha256
""")
    os.makedirs("/run/sshd", exist_ok=True)
    subprocess.run([SSHD, "-f", str(root / "sshd_config"), "-E", str(root / "sshd.log")], check=True, timeout=20)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return Sshd(port, ssh_config, pidfile, root)
        time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {port}: {(root / 'sshd.log').read_text()[-500:]}")
