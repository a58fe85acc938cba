"""The README's first command on a fresh Debian 12: the system python3 (externally managed, no venv
module) in a real debootstrap root, where `./install.sh` must install podcheck into a venv on the
volume and `podcheck` must run from it."""
from __future__ import annotations

import os
import shutil
import subprocess

import pytest

import podsim

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("rootfs")]
CA_BUNDLE = os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt"


def debian_with_python() -> str:
    """The cached bookworm root plus Debian's python3 (as a pod image has it), built once."""
    def build(tmp) -> None:
        root = tmp / "root"
        subprocess.run(["cp", "-a", str(podsim.rootfs()), str(root)], check=True)
        done = in_root(root, "apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3", 900)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return str(podsim.cached("rootfs-bookworm-python3", build) / "root")


def in_root(root, script: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """`script` as root inside `root`, with /dev, /proc and DNS, in a mount namespace of its own."""
    shutil.copy("/etc/resolv.conf", f"{root}/etc/resolv.conf")
    # This machine reaches the registries through a proxy with its own CA: the pod trusts what the host trusts.
    os.makedirs(f"{root}/etc/ssl/certs", exist_ok=True)
    shutil.copy(CA_BUNDLE, f"{root}/etc/ssl/podcheck-test-ca.crt")
    trust = "SSL_CERT_FILE=/etc/ssl/podcheck-test-ca.crt PIP_CERT=/etc/ssl/podcheck-test-ca.crt"
    setup = (f'mount --rbind /dev "$1/dev" && mount -t proc proc "$1/proc" && '
             f'exec chroot "$1" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root {trust} sh -c "$2"')
    return subprocess.run(["unshare", "--mount", "--fork", "sh", "-c", setup, "sh", str(root), script],
                          capture_output=True, text=True, timeout=timeout)


def test_install_sh_on_debian_12_system_python(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("chroot needs root")
    root = tmp_path / "pod"
    subprocess.run(["cp", "-al", debian_with_python(), str(root)], check=True)
    plain = in_root(root, "python3 -m pip --version || python3 -m venv /tmp/v", 120)
    assert plain.returncode != 0, "a fresh Debian 12 python3 has neither pip nor a working venv"
    files = subprocess.run(["git", "-C", str(podsim.REPO), "ls-files", "-co", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.split()
    for name in files:  # the checkout as it is (a clone of it holds the same files)
        if (podsim.REPO / name).is_file():
            (root / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(podsim.REPO / name, root / "src" / name)
    done = in_root(root, "cd /src && ./install.sh && /workspace/.podcheck-venv/bin/podcheck --version && "
                         "/workspace/.podcheck-venv/bin/podcheck list >/dev/null && echo LISTED", 900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "podcheck installed in /workspace/.podcheck-venv" in done.stdout and "LISTED" in done.stdout
    assert (root / "workspace/.podcheck-venv/bin/podcheck").exists(), "the venv lives on the volume"
    again = in_root(root, "cd /src && ./install.sh", 600)
    assert again.returncode == 0, "running it again (after a pod restart) is fine"
