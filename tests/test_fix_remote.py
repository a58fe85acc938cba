"""`podcheck --fix --hosts ssh://...` against a real sshd on 127.0.0.1: the lock, the markers, the
progress and every repair command go through the host, so the same fix works on a remote pod."""
from __future__ import annotations

import json

import fixsim
import podsim
import pytest

pytestmark = pytest.mark.ssh


def test_fix_over_ssh_installs_sage_and_records_it_on_the_pod(sshd_server, tmp_path):
    server = sshd_server
    python = podsim.layered_venv(tmp_path / "workspace" / "venv")  # torch (and pip) through a .pth
    pod = podsim.cpu_pod(tmp_path, python)
    pod.configure(attention={"sage": "required"},
                  fix={"pip_args": fixsim.pip_args(), "ffmpeg_install": ["true"], "base_python": podsim.BASE_PYTHON})
    remote = ["--hosts", server.url, "--ssh-config", str(server.ssh_config)]
    core = ["--select", "attention.sage_import"]
    run = pod.podcheck("--fix", *core, "--json", "-", *remote)
    assert run.rc == 0, run.stdout + run.stderr
    assert run.json["host"] == f"ssh://root@127.0.0.1:{server.port}"
    statuses = {r["id"]: r["status"] for r in run.json["repairs"]}
    assert statuses == {"venv": "unchanged", "torch": "unchanged", "sage": "changed"}
    assert (podsim.site_packages(tmp_path / "workspace" / "venv") / "sageattention" / "__init__.py").is_file()
    assert run.status("attention.sage_import") == "passed"
    markers = json.loads((pod.state_dir / "markers.json").read_text())
    assert {"venv", "torch", "sage"} <= set(markers)
    assert not (pod.state_dir / "fix.lock").exists()
    again = pod.podcheck("--fix", *core, "--json", "-", *remote)
    assert again.rc == 0 and {r["status"] for r in again.json["repairs"]} == {"unchanged"}
    status = pod.podcheck("status", *remote)
    assert status.rc == 0 and "markers: " in status.stdout and "sage" in status.stdout
