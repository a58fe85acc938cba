"""The same checks over ssh (a real sshd on 127.0.0.1) give the same results as locally."""
import pytest
import sshd

pytestmark = pytest.mark.ssh


def comparable(run):
    return [(r["id"], r["status"], r["message"], r["blocked_by"]) for r in run.json["results"]]


def test_ssh_matches_local(sshd_server, cpu_pod):
    server = sshd_server
    cpu_pod.configure(attention={"sage": "required"})  # one failure, so failures are compared too
    local = cpu_pod.podcheck("--json", "-", "--select", "pod,system,gpu,attention.sage_import")
    remote = cpu_pod.podcheck("--json", "-", "--select", "pod,system,gpu,attention.sage_import",
                              "--hosts", server.url, "--ssh-config", str(server.ssh_config))
    assert local.rc == remote.rc == 1, remote.stderr
    assert remote.json["host"] == f"ssh://root@127.0.0.1:{server.port}"
    assert comparable(remote) == comparable(local)
    assert remote.status("attention.sage_import") == "failed"


def test_unreachable_host_is_no_verdict(cpu_pod):
    port = sshd.free_port()  # nothing listens there
    run = cpu_pod.podcheck("--hosts", f"ssh://root@127.0.0.1:{port}", "--select", "system.ffmpeg")
    assert run.rc == 2 and run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert line.startswith(f"podcheck: error: no verdict: cannot reach ssh://root@127.0.0.1:{port}")
    assert "Connection refused" in line


def test_chroot_target_that_does_not_exist(cpu_pod, tmp_path):
    run = cpu_pod.podcheck("--hosts", f"chroot://{tmp_path}/no-rootfs", "--select", "system.ffmpeg")
    assert run.rc == 2 and "cannot reach chroot://" in run.stderr


@pytest.mark.parametrize("command", [["--select", "system.ffmpeg"], ["status"], ["report"], ["facts"]],
                         ids=["check", "status", "report", "facts"])
def test_unreachable_host_prints_ssh_own_message(cpu_pod, command):
    """A real ssh to a closed loopback port: one line with ssh's message, never testinfra's repr."""
    port = sshd.free_port()
    run = cpu_pod.podcheck(*command, "--hosts", f"ssh://root@127.0.0.1:{port}")
    assert run.rc == 2 and run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert line.endswith(f"cannot reach ssh://root@127.0.0.1:{port}: "
                         f"ssh: connect to host 127.0.0.1 port {port}: Connection refused"), line
    assert "CommandResult" not in line and "object at 0x" not in line
