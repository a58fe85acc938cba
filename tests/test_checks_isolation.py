"""isolation.no_shared_links and isolation.user_dirs on simulated shared volumes, locally and through
commands only (chroot of /). The checks never need the facts probe, so these runs are quick."""
from __future__ import annotations

import podsim
import pytest
import sim_comfyui

SELECT = ("--select", "isolation", "--select", "system", "--json", "-")


def volume(tmp_path, *users):
    """A pod whose workspace is a symlink to the volume (as /workspace often is), with a ComfyUI install."""
    (tmp_path / "volume").mkdir()
    (tmp_path / "workspace").symlink_to(tmp_path / "volume")
    pod = podsim.cpu_pod(tmp_path, "/nonexistent/python")
    ws = pod.workspace
    (ws / "ComfyUI" / "user" / "default" / "workflows").mkdir(parents=True)
    (ws / "ComfyUI" / "output").mkdir()
    sim_comfyui.make_user_dirs(ws, *users)
    return pod


def check(pod, hosts="local://"):
    result = pod.podcheck(*SELECT, "--hosts", hosts)
    assert result.rc in (0, 1), result.stderr
    for unrelated in ("pod.workspace", "system.ffmpeg"):
        assert result.status(unrelated) == "passed", result.result(unrelated)
    return result


def test_healthy_volume(tmp_path):
    pod = volume(tmp_path, "alice", "bob")
    ws = pod.workspace
    (ws / "output" / "readme.txt").write_text("old outputs lived here\n")  # a stray file is not a user
    (ws / "volumes" / "erin-out").mkdir(parents=True)
    sim_comfyui.make_user_dirs(ws, "erin", kinds=("input", "workflows", "user"))
    (ws / "output" / "erin").symlink_to(ws / "volumes" / "erin-out")  # a link inside the workspace, hers alone
    for hosts in sim_comfyui.HOSTS:
        result = check(pod, hosts)
        assert result.rc == 0, result.stdout
        assert result.result("isolation.user_dirs")["message"] == "3 user(s): alice, bob, erin"
        assert result.status("isolation.no_shared_links") == "passed"


def test_shared_links_and_bad_user_folders(tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    pod = volume(tmp_path, "alice", "bob", "carol", "dave")
    ws = pod.workspace
    real = tmp_path / "volume"
    pod.configure(pod={"users": ["alice", "bob", "carol", "dave", "../evil"]})
    (ws / "output" / "alice" / "img_0001.png").write_bytes(b"\x89PNG alice's")
    (ws / "ComfyUI" / "output").rmdir()
    (ws / "ComfyUI" / "output").symlink_to(ws / "output" / "alice")           # the last pod to start wins
    (ws / "ComfyUI" / "user" / "workflows").symlink_to(ws / "workflows" / "bob")
    (ws / "output" / "bob").rmdir()
    (ws / "output" / "bob").symlink_to(ws / "output" / "alice")              # bob writes into alice's folder
    (ws / "input" / "carol").rmdir()
    (ws / "input" / "carol").symlink_to(outside)                             # out of the workspace
    (ws / "workflows" / "dave").rmdir()                                      # missing
    for hosts in sim_comfyui.HOSTS:
        result = check(pod, hosts)
        links = result.result("isolation.no_shared_links")
        assert links["status"] == "failed" and links["repair"] == "isolation.unlink"
        assert links["message"].startswith(
            f"{ws}/ComfyUI/output is a symlink to {real}/output/alice (alice's output folder); "
            f"{ws}/ComfyUI/user/workflows is a symlink to {real}/workflows/bob (bob's workflows folder). "
            "Every pod on the volume sees this one link"), links["message"]
        dirs = result.result("isolation.user_dirs")
        assert dirs["status"] == "failed" and dirs["repair"] == "isolation.user_dirs"
        problems = dirs["message"].split(": ", 1)[1]
        assert problems.startswith("user name '../evil' contains '/'; ")
        assert (f"output/bob is a symlink to {real}/output/alice (alice's output folder): bob's files land there; "
                in problems)
        assert f"input/carol is a symlink out of the workspace, to {outside}; " in problems
        assert "workflows/dave is missing" in problems
        assert "alice" not in problems.replace("alice's", "").replace("output/alice", ""), "alice's own folders are fine"
    # checks only look: every link and every file is still there
    assert (ws / "ComfyUI" / "output").is_symlink() and (ws / "output" / "bob").is_symlink()
    assert (ws / "output" / "alice" / "img_0001.png").read_bytes() == b"\x89PNG alice's"


def test_a_users_folder_pointing_at_the_shared_root_and_a_file(tmp_path):
    pod = volume(tmp_path, "alice")
    ws = pod.workspace
    pod.configure(pod={"users": ["alice"]})
    (ws / "input" / "alice").rmdir()
    (ws / "input" / "alice").symlink_to(ws / "input")
    (ws / "workflows" / "alice").rmdir()
    (ws / "workflows" / "alice").write_text("not a folder\n")
    (ws / "ComfyUI" / "input").symlink_to(ws / "input")
    result = check(pod)
    problems = result.result("isolation.user_dirs")["message"]
    assert f"input/alice is a symlink to {tmp_path}/volume/input (the input folder of every user)" in problems
    assert "workflows/alice is a file, not a folder" in problems
    assert f"{ws}/ComfyUI/input is a symlink to {tmp_path}/volume/input (the input folder of every user)" in \
        result.result("isolation.no_shared_links")["message"]


@pytest.mark.parametrize("name, why", [("../evil", "contains '/'"), ("-rf", "starts with '-'"),
                                       ("a;b", "contains shell metacharacters ';'")])
def test_invalid_user_of_this_pod(tmp_path, name, why):
    pod = volume(tmp_path)
    result = check(pod.configure(pod={"user": name}))
    assert result.status("isolation.user_dirs") == "failed"
    assert f"user name {name!r} {why}" in result.result("isolation.user_dirs")["message"]
    assert not (tmp_path / "evil").exists() and not (tmp_path / "volume" / "evil").exists()


def test_no_users_at_all(tmp_path):
    pod = volume(tmp_path)
    result = check(pod.configure(pod={"user": ""}))
    assert result.status("isolation.user_dirs") == "skipped"
    assert "set [pod] user or [pod] users" in result.result("isolation.user_dirs")["message"]
