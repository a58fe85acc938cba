"""Pod.run's deadline ends the whole command: a daemon child that keeps stdout open, a setsid'd child,
on a local host and on a command-only one (chroot of /, as root). Real processes: python, sh, sleep."""
from __future__ import annotations

import os
import sys
import textwrap

import psutil
import pytest
import testinfra

from podcheck import config
from podcheck.host.pod import KILL_GRACE, Pod

HOSTS = ("local://", "chroot") if os.geteuid() == 0 else ("local://",)


def make_pod(tmp_path, spec: str) -> Pod:
    cfg = config.load(env={"PODCHECK_WORKSPACE": str(tmp_path), "HOME": str(tmp_path)})
    host = testinfra.get_host("/", connection="chroot") if spec == "chroot" else testinfra.get_host(spec)
    return Pod(cfg, host)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def leftovers():
    """Pids a test saw started; whatever still runs at the end is killed (and fails the test's own assert)."""
    pids: list[int] = []
    yield pids
    for pid in pids:
        try:
            psutil.Process(pid).kill()
        except psutil.Error:
            pass


@pytest.fixture
def forking_python(tmp_path):
    """A pod python (the probe runs on it) that prints, forks a daemon keeping stdout open, and exits."""
    path = tmp_path / "python"
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent("""\
        import os, sys, time
        if os.fork() == 0:
            os.setsid()
            print(os.getpid(), flush=True)
            time.sleep(120)
            sys.exit(0)
        time.sleep(0.2)
        print("probe done", flush=True)
        """))
    path.chmod(0o755)
    return path


@pytest.mark.parametrize("spec", HOSTS)
def test_deadline_ends_a_daemon_that_holds_stdout(tmp_path, spec, forking_python, leftovers):
    pod = make_pod(tmp_path, spec)
    ran = pod.run(str(forking_python), timeout=2)
    daemon = int(ran.stdout.split()[0])
    leftovers.append(daemon)
    assert "probe done" in ran.stdout
    assert ran.timed_out, ran
    assert ran.seconds < 2 + KILL_GRACE + 2, ran.seconds  # was: limit + 7 s, "host did not answer"
    assert gone(daemon), "the forked daemon outlived the deadline"


DETACHED = "setsid sleep 120 </dev/null >/dev/null 2>&1 & echo $!"


@pytest.mark.parametrize("spec", HOSTS)
@pytest.mark.parametrize(("script", "overruns"), [
    (DETACHED + "; sleep 120", True),  # the command overran: its setsid'd child goes with it
    (DETACHED, False),                 # how repairs start a service: in time, so the child must stay
])
def test_a_setsid_child_goes_only_with_a_command_that_overran(tmp_path, spec, script, overruns, leftovers):
    pod = make_pod(tmp_path, spec)
    ran = pod.run("sh", "-c", script, timeout=1.5)
    child = int(ran.stdout.split()[0])
    leftovers.append(child)
    assert ran.timed_out == overruns and ran.ok != overruns, ran
    assert ran.seconds < (1.5 + KILL_GRACE + 2 if overruns else 1.5), ran.seconds
    assert gone(child) == overruns


def test_a_plain_timeout_still_reads_as_timed_out(tmp_path):
    ran = make_pod(tmp_path, "local://").run("sleep", "30", timeout=0.5)
    assert ran.timed_out and ran.seconds < 0.5 + KILL_GRACE + 2
    assert ran.why() == "`sleep` timed out after 0.5 s"
