"""One bad user name must not block everyone: `--fix` reports it and still creates the valid users'
folders, launches ComfyUI for [pod] user and starts the sync loop for the rest. Real ComfyUI stand-in
(sim_comfyui), real rclone to an alias remote, real folders."""
from __future__ import annotations

import fixsim
import pytest
from sim_comfyui import comfy_pod, free_port

from podcheck.domain import syncloop_control

NAMES = [(["alice", "bob", "../evil"], "'../evil' contains '/'"),
         ([], "'my pics' contains whitespace")]  # no [pod] users: the folders under output/ are the users


@pytest.mark.parametrize("users,reported", NAMES, ids=["pod-users", "odd-folder"])
def test_a_bad_name_is_reported_and_the_valid_users_are_served(tmp_path, torch_python, users, reported):
    pod = comfy_pod(tmp_path, torch_python, users=("alice",), sage="off")
    drive = tmp_path / "drive"
    drive.mkdir()
    conf = tmp_path / "rclone.conf"
    conf.write_text(f"[gdrive]\ntype = alias\nremote = {drive}\n")
    conf.chmod(0o600)
    (pod.workspace / "output" / "alice" / "a.png").write_bytes(b"png")
    (pod.workspace / "output" / "my pics").mkdir()
    pod.configure(pod={"users": users}, comfyui={"port": free_port()},
                  sync={"rclone_config": str(conf), "remote": "gdrive", "remote_root": "Out", "min_age": "0s"})
    try:
        run = pod.podcheck("--fix", "--select", "isolation.user_dirs", "--select", "comfyui.running",
                           "--select", "sync.running", "--json", "-")
        repairs = {r["id"]: r for r in run.json["repairs"]}
        assert reported in repairs["isolation.user_dirs"]["message"]
        assert repairs["isolation.user_dirs"]["status"] != "failed", repairs["isolation.user_dirs"]
        assert repairs["comfyui.launch"]["status"] == "changed", repairs["comfyui.launch"]
        assert repairs["sync.start"]["status"] == "changed", repairs["sync.start"]
        assert run.status("comfyui.running") == "passed"
        assert run.status("isolation.user_dirs") == "failed", "the bad name is still reported"
        assert reported.replace("'", "") in run.result("isolation.user_dirs")["message"].replace("'", "")
        assert run.rc == 1
        if users:
            assert (pod.workspace / "input" / "bob").is_dir()
        fixsim.wait_for(lambda: (drive / "Out" / "output" / "alice" / "a.png").exists(), timeout=30)
        assert not (drive / "Out" / "output" / "my pics").exists()
    finally:
        syncloop_control.stop(pod.live(), timeout=3)
        fixsim.stop_pod(tmp_path)
