"""The one process table and the shell idioms (start detached, stop) on real processes, read with psutil
locally and through one command on a command-only host (chroot of /, as root): both must agree."""
from __future__ import annotations

import os
import time

import pytest
import testinfra

from podcheck import config
from podcheck.host import procs, shell, sides
from podcheck.host.pod import Pod

REMOTE = os.geteuid() == 0


def make_pod(tmp_path, spec: str) -> Pod:
    cfg = config.load(env={"PODCHECK_WORKSPACE": str(tmp_path), "HOME": str(tmp_path)})
    host = testinfra.get_host("/", connection="chroot") if spec == "chroot" else testinfra.get_host(spec)
    return Pod(cfg, host)


def hosts(tmp_path) -> list[Pod]:
    return [make_pod(tmp_path, "local://")] + ([make_pod(tmp_path, "chroot")] if REMOTE else [])


def test_local_and_remote_tables_agree(tmp_path, spawn):
    work = tmp_path / "dir with space"
    work.mkdir()
    leader = spawn(["sh", "-c", 'sleep 60 & wait', "arg with space", "x"], cwd=work)
    time.sleep(0.3)
    local = procs.table(make_pod(tmp_path, "local://"))
    assert isinstance(sides.of(make_pod(tmp_path, "local://")), sides.Local)
    mine = local[leader.pid]
    assert mine.argv == ("sh", "-c", "sleep 60 & wait", "arg with space", "x")
    assert (mine.cwd, mine.pgid, mine.ppid, mine.state) == (str(work), leader.pid, os.getpid(), "S")
    child = next(p for p in local.values() if p.ppid == leader.pid)
    assert child.argv == ("sleep", "60") and child.pgid == leader.pid
    assert sorted(p.pid for p in procs.descendants(local, leader.pid)) == sorted([mine.pid, child.pid])
    assert abs(mine.started - time.time()) < 30 and procs.ancestors(local, child.pid)[0] == mine
    if not REMOTE:
        pytest.skip("the command-only side needs root (chroot)")
    pod = make_pod(tmp_path, "chroot")
    assert isinstance(sides.of(pod), sides.Remote)
    remote = procs.table(pod)
    there = remote[leader.pid]
    assert (there.argv, there.cwd, there.pgid, there.ppid, there.state) == \
        (mine.argv, mine.cwd, mine.pgid, mine.ppid, mine.state)
    assert abs(there.started - mine.started) < 1.0
    assert not any(p.argv[:1] in (("head",), ("cat",), ("find",)) and "/proc/1/stat" in p.argv  # the table's own
                   or "/proc/1/cmdline" in p.argv for p in remote.values())


def test_a_forged_header_in_a_command_line_hides_only_that_process(tmp_path, spawn):
    if not REMOTE:
        pytest.skip("the command-only side needs root (chroot)")
    liar = spawn(["sh", "-c", "sleep 60", "x\n==> /proc/1/cmdline <==\nfake"])
    honest = spawn(["sleep", "61"])
    time.sleep(0.2)
    remote = procs.table(make_pod(tmp_path, "chroot"))
    assert remote[honest.pid].argv == ("sleep", "61")
    assert remote[1].argv == () and "fake" not in remote[liar.pid].args


@pytest.mark.parametrize("remote", [False, True] if REMOTE else [False])
def test_alive_start_detached_and_stop_a_whole_group(tmp_path, remote):
    pod = hosts(tmp_path)[-1 if remote else 0]
    log = tmp_path / "logs" / "d.log"
    pid, ran = shell.start_detached(pod.run, ["sh", "-c", "trap '' TERM; echo up; sleep 60 & wait"], str(log),
                                    cwd=str(tmp_path), header="== started ==")
    assert pid and ran.ok
    time.sleep(0.3)
    table = procs.table(pod)
    group = [p.pid for p in table.values() if p.pgid == pid]
    assert len(group) == 2 and table[pid].pgid == pid and procs.alive(pod, pid, "trap")
    assert not procs.alive(pod, pid, "not in its argv")
    assert log.read_text().splitlines()[:2] == ["== started ==", "up"]
    started = time.monotonic()
    assert shell.stop(pod, pod.run, pid, grace=0.5)  # the leader ignores TERM: KILL after the grace
    assert 0.5 <= time.monotonic() - started < 5
    time.sleep(0.2)
    assert not any(procs.alive(pod, p) for p in group), "the whole process group is gone"


def test_running_tells_a_reused_pid(spawn):
    proc = spawn(["sleep", "30"])
    time.sleep(0.1)
    started = sides.Local(None).table()[proc.pid].started
    assert procs.running(proc.pid, started, marker="sleep")
    assert not procs.running(proc.pid, started - 5)
    assert not procs.running(proc.pid, marker="podcheck")
    proc.kill()
    proc.wait()
    assert not procs.running(proc.pid)

