"""comfyui.installed / running / launch_flags and attention.sage_active on simulated pods with real
stand-in ComfyUI processes: the healthy pod, then each fault built for real."""
from __future__ import annotations

import pytest
import sim_comfyui
from sim_comfyui import comfy_log, comfy_pod, user_flags

from podcheck.domain import comfyui

#: The areas these tests judge; other areas' checks are left out so their own faults cannot leak in.
SELECT = ("--select", "comfyui", "--select", "attention", "--select", "isolation", "--select", "pod",
          "--select", "system", "--select", "gpu.torch_build", "--json", "-")
CHECKS = ("comfyui.installed", "comfyui.running", "comfyui.launch_flags", "attention.sage_active")


def run(pod, *extra, select=SELECT):
    result = pod.podcheck(*select, *extra)
    assert result.rc in (0, 1), result.stderr
    return result


def assert_others_pass(result):
    """The checks these faults do not touch keep passing."""
    for check in ("pod.workspace", "system.ffmpeg", "gpu.torch_build", "isolation.no_shared_links",
                  "isolation.user_dirs"):
        assert result.status(check) == "passed", (check, result.result(check))


def healthy_pod(tmp_path, sage_py, launcher):
    """A pod whose ComfyUI runs with sage and alice's folders; the log also holds an earlier run that fell
    back, before this run's launch banner, so it does not count."""
    pod = comfy_pod(tmp_path, sage_py)
    log = comfy_log(pod)
    log.parent.mkdir(parents=True)
    log.write_text("[podcheck] ComfyUI launch pid=1\nUsing sage attention\n"
                   "Error running sage attention: SM89 kernel is not available., using pytorch attention instead.\n")
    comfy = launcher.start(pod.workspace / "ComfyUI", "--use-sage-attention", "--cpu",
                           *user_flags(pod.workspace, "alice"), python=sage_py, log=log)
    return pod, comfy


def assert_healthy(result, comfy):
    assert result.rc == 0, result.stdout
    assert {c: result.status(c) for c in CHECKS} == dict.fromkeys(CHECKS, "passed")
    assert_others_pass(result)
    assert result.status("attention.sage_import") == "passed"
    assert f"pid {comfy.pid} (port {comfy.port})" in result.result("comfyui.running")["message"]
    assert result.result("comfyui.launch_flags")["message"] == f"pid {comfy.pid} (port {comfy.port}) for alice, sage"


def test_healthy_pod_local_and_through_commands(tmp_path, sage_py, launcher):
    pod, comfy = healthy_pod(tmp_path, sage_py, launcher)
    for hosts in sim_comfyui.HOSTS:
        assert_healthy(run(pod, "--hosts", hosts), comfy)


@pytest.mark.ssh
def test_healthy_pod_over_ssh(tmp_path, sage_py, launcher, sshd_server):
    pod, comfy = healthy_pod(tmp_path, sage_py, launcher)
    result = run(pod, "--hosts", sshd_server.url, "--ssh-config", str(sshd_server.ssh_config))
    assert result.json["host"] == sshd_server.url
    assert_healthy(result, comfy)


def test_launch_flag_faults_no_sage_flag_and_no_output_directory(tmp_path, sage_py, launcher):
    pod = comfy_pod(tmp_path, sage_py, users=("alice", "bob"))
    ws, log = pod.workspace, comfy_log(pod)
    no_sage = launcher.start(ws / "ComfyUI", "--cpu", *user_flags(ws, "alice"), python=sage_py, log=log)
    no_dirs = launcher.start(ws / "ComfyUI", "--use-sage-attention", "--cpu", python=sage_py, log=log)
    result = run(pod)
    assert result.rc == 1
    flags = result.result("comfyui.launch_flags")
    assert flags["status"] == "failed" and flags["repair"] == "comfyui.relaunch"
    message = flags["message"]
    assert f"pid {no_sage.pid} (port {no_sage.port}) for alice: no --use-sage-attention" in message
    assert f"pid {no_dirs.pid} (port {no_dirs.port}) for no user: no --output-directory (so it uses {ws}/ComfyUI/output" in message
    assert "no --input-directory" in message and "no --temp-directory" in message
    assert result.status("comfyui.running") == "passed" and result.status("comfyui.installed") == "passed"
    assert result.status("attention.sage_active") == "passed", "the flagged one's log lines follow its launch banner"
    assert_others_pass(result)


def test_two_processes_on_one_output_and_a_port_answered_by_another(tmp_path, torch_python, launcher):
    """sage off here, so the stand-ins start without importing sageattention (fast)."""
    pod = comfy_pod(tmp_path, torch_python, users=("carol", "dave"), sage="off")
    ws, log = pod.workspace, comfy_log(pod)
    first = launcher.start(ws / "ComfyUI", "--cpu", *user_flags(ws, "carol"), python=torch_python, log=log)
    second = launcher.start(ws / "ComfyUI", "--cpu", "--output-directory", str(ws / "output" / "carol"),
                            "--input-directory", str(ws / "input" / "dave"), "--temp-directory", str(ws / "temp" / "dave"),
                            "--user-directory", str(ws / "user" / "dave"), "--database-url",
                            comfyui.database_url(str(ws), "dave"), python=torch_python, log=log)
    # a ComfyUI of another folder owns a port; ours, still loading, was told to use the same one
    other = launcher.start(sim_comfyui.lay_comfyui(tmp_path / "elsewhere" / "ComfyUI"), "--cpu",
                           python=torch_python, log=tmp_path / "elsewhere.log")
    late = launcher.start(ws / "ComfyUI", "--cpu", *user_flags(ws, "dave"), python=torch_python,
                          log=log, port=other.port, env={"STANDIN_START_DELAY": "120"}, wait="exec")
    result = run(pod)
    message = result.result("comfyui.launch_flags")["message"]
    assert result.status("comfyui.launch_flags") == "failed"
    assert f"pids {first.pid}, {second.pid} share the output folder {ws}/output/carol" in message
    assert f"pid {second.pid} (port {second.port}) for carol, dave: its folders belong to different users (carol, dave)" in message
    assert (f"pid {late.pid} (port {other.port}) for dave: port {other.port} is answered by another ComfyUI: "
            f"its /system_stats argv is --listen 127.0.0.1 --port {other.port} --cpu") in message
    assert f"pid {first.pid} (port {first.port})" not in message.split("share")[0], "the first one alone is fine"
    assert result.status("comfyui.running") == "passed"
    assert result.status("attention.sage_active") == "skipped"
    assert_others_pass(result)


def test_a_process_that_does_not_answer(tmp_path, torch_python, launcher):
    pod = comfy_pod(tmp_path, torch_python, sage="optional")
    hung = launcher.start(pod.workspace / "ComfyUI", "--cpu", *user_flags(pod.workspace, "alice"),
                          python=torch_python, log=comfy_log(pod), env={"STANDIN_HTTP": "silent"}, wait="log")
    result = run(pod)
    running = result.result("comfyui.running")
    assert running["status"] == "failed" and running["repair"] == "comfyui.launch"
    assert running["message"].startswith(
        f"pid {hung.pid} (port {hung.port}) does not answer GET http://127.0.0.1:{hung.port}/system_stats: no answer within 1 s")
    assert "still loading?" in running["message"]
    for blocked in ("comfyui.launch_flags", "attention.sage_active"):
        assert result.status(blocked) == "skipped" and result.result(blocked)["blocked_by"] == "comfyui.running"
    assert result.status("comfyui.installed") == "passed"
    assert_others_pass(result)


def test_sage_falls_back_to_pytorch_attention(tmp_path, sage_py, launcher):
    pod = comfy_pod(tmp_path, sage_py)
    comfy = launcher.start(pod.workspace / "ComfyUI", "--use-sage-attention", "--cpu", *user_flags(pod.workspace, "alice"),
                           python=sage_py, log=comfy_log(pod), env={"STANDIN_SAGE_FALLBACKS": "3"})
    result = run(pod)
    active = result.result("attention.sage_active")
    assert active["status"] == "failed" and active["repair"] == "comfyui.relaunch"  # a restart judges a new run
    assert active["message"].startswith(
        f"pid {comfy.pid} (port {comfy.port}) fell back to pytorch attention 3 time(s) since it started: sage's kernels "
        "were not built for this GPU; last: Error running sage attention: SM89 kernel is not available.")
    assert "after rebuilding sage for this GPU" in active["message"]
    assert {c: result.status(c) for c in CHECKS[:3]} == dict.fromkeys(CHECKS[:3], "passed")
    assert_others_pass(result)


def test_sage_active_reads_a_log_without_launch_banners(tmp_path, sage_py, launcher):
    """A ComfyUI started by hand into the configured log: judged while it is the only one."""
    pod = comfy_pod(tmp_path, sage_py)
    ws, log = pod.workspace, comfy_log(pod)
    only = launcher.start(ws / "ComfyUI", "--use-sage-attention", "--cpu", *user_flags(ws, "alice"), python=sage_py,
                          log=log, banner=False, env={"STANDIN_SAGE_FALLBACKS": "1"})
    select = ("--select", "attention.sage_active", "--json", "-")
    active = run(pod, select=select).result("attention.sage_active")
    assert active["status"] == "failed", active
    assert active["message"].startswith(f"pid {only.pid} (port {only.port}) fell back to pytorch attention 1 time(s)")
    second = launcher.start(ws / "ComfyUI", "--use-sage-attention", "--cpu", python=sage_py, log=log, banner=False)
    active = run(pod, select=select).result("attention.sage_active")
    assert active["status"] == "skipped"
    assert active["message"] == (f"cannot tell which lines of {log} are from pid(s) {only.pid}, {second.pid}: "
                                 "they were not launched by podcheck (no launch banner)")


def test_nothing_runs_because_sage_is_missing_and_requirements_are_unmet(tmp_path, torch_python, launcher):
    """sage required but not installed: ComfyUI started with the flag exits at import, like the real one."""
    pod = comfy_pod(tmp_path, torch_python, requirements=("podcheck-no-such-dist>=1.0", "filelock<1.0"))
    crashed = launcher.start(pod.workspace / "ComfyUI", "--use-sage-attention", "--cpu",
                             *user_flags(pod.workspace, "alice"), python=torch_python, log=comfy_log(pod), wait="exit")
    assert crashed.process.returncode == 255
    result = run(pod)
    running = result.result("comfyui.running")
    assert running["blocked_by"] == "comfyui.installed"  # one root cause, one failure
    installed = result.result("comfyui.installed")
    assert installed["status"] == "failed" and installed["repair"] == "comfyui"
    assert "missing podcheck-no-such-dist>=1.0" in installed["message"]
    assert "filelock<1.0 (installed " in installed["message"]
    assert result.status("attention.sage_import") == "failed"
    for blocked in ("comfyui.launch_flags", "attention.sage_active"):
        assert result.result(blocked)["blocked_by"] == "comfyui.installed"
    assert result.status("pod.workspace") == "passed" and result.status("isolation.user_dirs") == "passed"


def test_a_comfyui_too_old_for_sage(tmp_path, sage_py):
    pod = comfy_pod(tmp_path, sage_py, sage_flag=False)
    result = run(pod, "--select", "comfyui.installed")
    installed = result.result("comfyui.installed")
    assert installed["status"] == "failed"
    assert "comfy/cli_args.py has no --use-sage-attention" in installed["message"]
    pod.configure(attention={"sage": "optional"})
    assert run(pod, "--select", "comfyui.installed").status("comfyui.installed") == "passed"


def test_no_comfyui_and_comfyui_turned_off(tmp_path, torch_python):
    pod = comfy_pod(tmp_path, torch_python, sage="off")
    (pod.workspace / "ComfyUI" / "main.py").unlink()
    result = run(pod)
    assert result.result("comfyui.installed")["message"] == f"no ComfyUI in {pod.workspace}/ComfyUI: main.py missing"
    assert result.result("comfyui.installed")["repair"] == "comfyui"
    pod.configure(comfyui={"enabled": False})
    result = run(pod)
    for check in CHECKS + ("isolation.no_shared_links",):
        assert result.status(check) == "skipped", check
    assert "[comfyui] enabled = false" in result.result("comfyui.running")["message"]
    assert result.status("isolation.user_dirs") == "passed" and result.rc == 0
