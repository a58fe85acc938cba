"""Simulated pods behind real sshd instances on 127.0.0.1, one port each, for fleet tests and bench.

Every pod's sshd runs in its own mount namespace (`unshare --mount`) where /etc/passwd gives
root the login shell /bin/sh: sshd then runs each command as `sh -c`, without root's ~/.bashrc
(pyenv init costs ~0.1 s per command on this machine, machine.md section 5). The ssh_config has one
`Host pod-N` entry per pod and no ControlMaster: podcheck must bring its own multiplexing.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from sshd import SSHD, free_port, keyed_root, ssh_config, sshd_config


@dataclass
class SimSshd:
    name: str
    port: int
    proc: subprocess.Popen

    def kill(self) -> None:
        """The pod dies: its sshd and every session it serves (their ssh connections drop)."""
        try:
            family = [psutil.Process(self.proc.pid), *psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            family = []
        for p in family:
            try:
                p.kill()
            except psutil.NoSuchProcess:
                pass
        self.proc.wait(10)


@dataclass
class SshFleet:
    root: Path
    ssh_config: Path
    pods: dict[str, SimSshd] = field(default_factory=dict)

    def add(self, name: str) -> SimSshd:
        port = free_port()
        conf = self.root / f"sshd_config.{name}"
        conf.write_text((self.root / "sshd_config.in").read_text().replace("@PORT@", str(port)))
        cmd = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
               'mount --bind "$1" /etc/passwd && exec "$2" -D -f "$3" -E "$4"', "_",
               str(self.root / "passwd"), SSHD, str(conf), str(self.root / f"sshd.{name}.log")]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)
        pod = SimSshd(name, port, proc)
        self.pods[name] = pod
        with open(self.ssh_config, "a") as fh:
            fh.write(f"Host {name}\n  HostName 127.0.0.1\n  Port {port}\n  User root\n")
        return pod

    def wait(self, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        for pod in self.pods.values():
            while True:
                with socket.socket() as s:
                    if s.connect_ex(("127.0.0.1", pod.port)) == 0:
                        break
                if pod.proc.poll() is not None or time.monotonic() > deadline:
                    log = self.root / f"sshd.{pod.name}.log"
                    raise RuntimeError(f"sshd of {pod.name} did not listen: {log.read_text()[-300:] if log.exists() else ''}")
                time.sleep(0.05)

    def inventory(self, names: list[str] | None = None) -> Path:
        path = self.root / "inventory.txt"
        path.write_text("# pods of the fleet test\n" + "".join(f"ssh://{n}\n" for n in names or self.pods))
        return path

    def ansible_inventory(self) -> Path:
        """The same pods as an Ansible INI inventory (group `pods`)."""
        key = self.root / "clientkey"
        lines = ["[pods]"] + [f"{n} ansible_host=127.0.0.1 ansible_port={p.port} ansible_user=root "
                              f"ansible_ssh_private_key_file={key} "
                              f"ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
                              f"-o IdentitiesOnly=yes -o BatchMode=yes -o LogLevel=ERROR'"
                              for n, p in self.pods.items()]
        path = self.root / "inventory.ini"
        path.write_text("\n".join(lines) + "\n")
        return path

    def stop(self) -> None:
        for pod in self.pods.values():
            if pod.proc.poll() is None:
                pod.kill()
        shutil.rmtree(self.root, ignore_errors=True)


def start(names: list[str]) -> SshFleet:
    """sshd for each name (RuntimeError where that cannot run: not root, no sshd, no unshare)."""
    if os.geteuid() != 0 or not os.path.exists(SSHD) or not shutil.which("unshare"):
        raise RuntimeError("simulated ssh pods need root, openssh-server and unshare")
    root = keyed_root("sshfleet-")
    passwd = Path("/etc/passwd").read_text().splitlines()
    (root / "passwd").write_text("\n".join(
        ":".join(f.split(":")[:6] + ["/bin/sh"]) if f.startswith("root:") else f for f in passwd) + "\n")
    (root / "sshd_config.in").write_text(sshd_config(root, "@PORT@", "MaxStartups 100:30:200", "MaxSessions 100"))
    ssh_config_path = root / "ssh_config"
    ssh_config_path.write_text(ssh_config(root, "/dev/null", "ControlMaster no"))
    os.makedirs("/run/sshd", exist_ok=True)
    fleet = SshFleet(root, ssh_config_path)
    try:
        for name in names:
            fleet.add(name)
        fleet.wait()
    except Exception:
        fleet.stop()
        raise
    return fleet


def ssh_processes(marker: str) -> list[psutil.Process]:
    """ssh clients and masters whose command line mentions `marker` (a folder of the test)."""
    out = []
    for p in psutil.process_iter(["name", "cmdline"]):
        try:
            if p.info["name"] == "ssh" and marker in " ".join(p.info["cmdline"] or []):
                out.append(p)
        except psutil.Error:
            continue
    return out


def stop_signal(pod: SimSshd) -> None:
    os.kill(pod.proc.pid, signal.SIGSTOP)
