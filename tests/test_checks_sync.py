"""sync.* on simulated pods with real rclone: an alias remote standing in for Drive (no network) for the
loop, drive sections for the config rules, the managed loop started and killed for real."""
from __future__ import annotations

import doctest
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import podsim

from podcheck.host import procs
from podcheck.domain import rclone
from podcheck import syncloop

SELECT = ["--select", "sync", "--select", "pod", "--select", "disk", "--json", "-"]
FAKE_KEY = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"


def service_account(path: Path, mode: int = 0o600, **extra) -> Path:
    data = {"type": "service_account", "project_id": "p", "private_key_id": "k1", "private_key": FAKE_KEY,
            "client_email": "sync@p.iam.gserviceaccount.com", **extra}
    path.write_text(json.dumps(data))
    path.chmod(mode)
    return path


def write_conf(path: Path, text: str, mode: int = 0o600) -> Path:
    path.write_text(text)
    path.chmod(mode)
    return path


@pytest.fixture
def sync_pod(cpu_pod, tmp_path):
    """A CPU pod whose remote `gdrive` is an rclone alias to a local folder; alice and bob have outputs."""
    drive = tmp_path / "drive"
    drive.mkdir()
    conf = write_conf(tmp_path / "rclone.conf", f"[gdrive]\ntype = alias\nremote = {drive}\n")
    for user in ("alice", "bob"):
        out = cpu_pod.workspace / "output" / user
        out.mkdir(parents=True)
        (out / f"{user}-001.png").write_bytes(b"png" * 100)
    (cpu_pod.workspace / "output" / "alice" / "half.partial").write_bytes(b"x")
    (cpu_pod.workspace / "output" / "bad name").mkdir()
    cpu_pod.configure(sync={"rclone_config": str(conf), "remote": "gdrive", "remote_root": "ComfyUI-Output",
                            "min_age": "0s", "max_age_minutes": 5.0},
                      pod={"user": ""})
    cpu_pod.drive = drive
    yield cpu_pod
    syncloop.stop(cpu_pod.live(), timeout=3)



def first_pass(pod):
    return podsim.wait_for(lambda: (syncloop.status(pod) or {}).get("last_pass"), what="the loop's first pass")


def test_managed_loop_syncs_each_user_and_all_checks_pass(sync_pod):
    pod = sync_pod.live()
    started = syncloop.start(pod)
    assert started.changed and started.pid
    first_pass(pod)
    again = syncloop.start(pod)
    assert not again.changed and again.pid == started.pid, "a second start must leave the running loop alone"

    remote = sync_pod.drive / "ComfyUI-Output" / "output"
    assert (remote / "alice" / "alice-001.png").read_bytes() == b"png" * 100
    assert (remote / "bob" / "bob-001.png").exists()
    assert not (remote / "alice" / "half.partial").exists(), "*.partial is excluded"
    assert not (remote / "bad name").exists(), "an invalid user name never becomes a path"
    status = syncloop.status(pod)
    assert status["last_pass"]["ok"] and status["last_success"]
    assert status["users"]["bad name"] == {"skipped": "user name contains whitespace"}
    assert status["users"]["alice"]["output"]["rc"] == 0
    log = Path(pod.config.sync.log).read_text()
    assert "podcheck-syncloop: alice output: rclone sync" in log

    run = sync_pod.podcheck(*SELECT)
    assert run.statuses() == {"sync.config": "passed", "sync.running": "passed", "sync.per_user": "passed",
                              "sync.errors": "passed", "pod.workspace": "passed", "disk.workspace": "passed"}, run.stdout
    assert f"pid {started.pid}" in run.result("sync.running")["message"]
    assert "2 sync mapping(s)" in run.result("sync.per_user")["message"]  # alice and bob; "bad name" is left out

    sync_pod.configure(sync={"remote_root": "Elsewhere"})
    run = sync_pod.podcheck("--select", "sync.per_user", "--json", "-")
    assert run.status("sync.per_user") == "failed"
    assert ("the sync loop writes to gdrive:ComfyUI-Output, but [sync] now says gdrive:Elsewhere: restart it"
            in run.result("sync.per_user")["message"])

    assert syncloop.stop(pod) == started.pid
    assert syncloop.running_pid(pod) is None
    assert (syncloop.status(pod) or {}).get("stopped")


def test_loop_killed_is_dead(sync_pod):
    pod = sync_pod.live()
    pid = syncloop.start(pod).pid
    first_pass(pod)
    os.killpg(pid, signal.SIGKILL)
    podsim.wait_for(lambda: syncloop.running_pid(pod) is None, what="the loop to die")

    run = sync_pod.podcheck(*SELECT)
    msg = run.result("sync.running")["message"]
    assert run.status("sync.running") == "failed"
    assert f"the sync loop (pid {pid}) is dead" in msg and run.result("sync.running")["repair"] == "sync.start"
    assert "last successful pass was" in msg
    assert run.status("sync.config") == "passed" and run.status("pod.workspace") == "passed"
    assert run.status("sync.errors") == "passed"


def test_loop_stale_and_failing(sync_pod):
    sync_pod.configure(sync={"max_age_minutes": 0.02})  # 1.2 s; the loop's next pass is 60 s away
    pod = sync_pod.live()
    syncloop.start(pod)
    first_pass(pod)
    time.sleep(1.4)
    run = sync_pod.podcheck(*SELECT)
    assert run.status("sync.running") == "failed"
    assert "is stale: its last successful pass was" in run.result("sync.running")["message"]
    assert run.status("sync.per_user") == "passed" and run.status("sync.config") == "passed"
    syncloop.stop(pod)

    # The remote's folder cannot be created (its parent is a file): every pass fails, and the check says why.
    blocker = sync_pod.root / "blocker"
    blocker.write_text("a file, not a folder")
    write_conf(sync_pod.root / "rclone.conf", f"[gdrive]\ntype = alias\nremote = {blocker}/drive\n")
    pod = sync_pod.live()
    syncloop.start(pod)
    first_pass(pod)
    time.sleep(1.3)
    run = sync_pod.podcheck(*SELECT)
    msg = run.result("sync.running")["message"]
    assert run.status("sync.running") == "failed", msg
    assert "without one successful pass" in msg and "failing: alice output:" in msg and "not a directory" in msg
    assert run.status("sync.config") == "passed" and run.status("pod.workspace") == "passed"


def test_whole_output_and_wrong_user_targets(sync_pod, spawn, tmp_path):
    ws = sync_pod.workspace
    script = tmp_path / "sync_loop.sh"
    script.write_text(
        "#!/bin/sh\nwhile true; do\n"
        f'  rclone sync "{ws}/output" "gdrive:ComfyUI-Output/output" --transfers 2  # mixes everyone\n'
        '  for d in /nowhere/*; do rclone sync "$d" "gdrive:x/$d"; done\n'
        "  sleep 300\ndone\n")
    spawn(["sh", str(script)])
    big = ws / "output" / "alice" / "big.bin"
    big.write_bytes(os.urandom(1 << 20))
    conf = sync_pod.config_path.parent / "rclone.conf"
    spawn(["rclone", "copy", str(ws / "output" / "alice"), "gdrive:ComfyUI-Output/output/bob",
           "--config", str(conf), "--bwlimit", "1k"])
    sync_pod.configure(sync={"process_pattern": r"sync_loop\.sh"})
    live = sync_pod.live()
    podsim.wait_for(lambda: any("--bwlimit" in p.args for p in procs.listing(live)), what="rclone to run")

    run = sync_pod.podcheck(*SELECT)
    msg = run.result("sync.per_user")["message"]
    assert run.status("sync.per_user") == "failed", msg
    assert f"{script} (pid" in msg and f"syncs all of {ws}/output to gdrive:ComfyUI-Output/output" in msg
    assert f"maps {ws}/output/alice to gdrive:ComfyUI-Output/output/bob, not to gdrive:ComfyUI-Output/output/alice" in msg
    assert "/nowhere" not in msg, "lines with shell variables are not judged"
    assert run.status("sync.running") == "passed", "the loop script matches [sync] process_pattern"
    assert "matches [sync] process_pattern" in run.result("sync.running")["message"]
    assert run.status("sync.config") == "passed" and run.status("pod.workspace") == "passed"


def test_drive_config_rules(sync_pod, tmp_path):
    key = service_account(tmp_path / "sa.json")
    good = (f"[gdrive]\ntype = drive\nscope = drive\nteam_drive = 0ABCdefGHIjklMNOpqr\n"
            f"service_account_file = {key}\nroot_folder_id =\n\n[users]\ntype = alias\nremote = gdrive:ComfyUI/users\n")
    conf = write_conf(tmp_path / "drive.conf", good)
    sync_pod.configure(sync={"rclone_config": str(conf), "remote": "users"})
    run = sync_pod.podcheck(*SELECT)
    assert run.status("sync.config") == "passed", run.result("sync.config")
    assert run.result("sync.config")["message"].endswith("remote users (alias) -> gdrive (drive)")

    # root_folder_id instead of team_drive, a key readable by everyone, a config readable by everyone
    write_conf(conf, good.replace("team_drive = 0ABCdefGHIjklMNOpqr", "team_drive =")
               .replace("root_folder_id =", "root_folder_id = 0ABFT2ECfnjL3Uk9PVA"), mode=0o644)
    key.chmod(0o644)
    run = sync_pod.podcheck(*SELECT)
    msg = run.result("sync.config")["message"]
    assert run.status("sync.config") == "failed"
    assert "[gdrive] uses root_folder_id = 0ABFT2ECfnjL3Uk9PVA with a service account instead of team_drive" in msg
    assert f"service-account key {key} is readable by group/others (mode 644)" in msg
    assert f"{conf} is readable by group/others (mode 644)" in msg
    assert "PRIVATE KEY" not in run.stdout and "MIIEvQ" not in run.stdout
    assert run.result("sync.running")["blocked_by"] == "sync.config", "a broken config is the root cause"
    assert run.status("pod.workspace") == "passed" and run.status("disk.workspace") == "passed"

    # the key file is gone; then it is not a service-account key
    write_conf(conf, good)
    key.unlink()
    run = sync_pod.podcheck(*SELECT)
    assert f"[gdrive] service_account_file {key} does not exist" in run.result("sync.config")["message"]
    key.write_text(json.dumps({"installed": {"client_secret": "s3cr3t-value"}}))
    key.chmod(0o600)
    run = sync_pod.podcheck(*SELECT)
    msg = run.result("sync.config")["message"]
    assert f"service_account_file {key} is JSON of type 'None', not 'service_account'" in msg
    assert "s3cr3t" not in run.stdout


def test_sync_log_errors(sync_pod):
    log = Path(sync_pod.state_dir) / "sync.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    now = time.strftime("%Y/%m/%d %H:%M:%S")
    old = "2020/01/02 03:04:05"
    log.write_text(
        f"{old} ERROR : x.png: Failed to copy: googleapi: Error 403: storageQuotaExceeded\n"
        f"{now} podcheck-syncloop: alice output: rclone sync /ws/output/alice gdrive:ComfyUI-Output/output/alice\n"
        f"{now} NOTICE: a.png: Duplicate object found in destination - ignoring\n"
        f"{now} NOTICE: b.png: Duplicate object found in destination - ignoring\n"
        f"{now} ERROR : c.png: Failed to copy: googleapi: Error 403: The user's Drive storage quota has been "
        "exceeded., storageQuotaExceeded\n"
        f"{now} ERROR : Failed to create file system: oauth2: cannot fetch token: 400 Bad Request "
        'Response: {"error": "invalid_grant", "access_token": "ya29.SECRETSECRET"}\n')
    run = sync_pod.podcheck(*SELECT)
    msg = run.result("sync.errors")["message"]
    assert run.status("sync.errors") == "failed"
    assert "2 x 'Duplicate object found'" in msg
    assert "rclone dedupe --dedupe-mode newest gdrive:ComfyUI-Output/output/alice" in msg
    assert "1 x quota error" in msg, "the 2020 line is outside the window"
    assert "1 x auth error" in msg and '"access_token": "***"' in msg and "SECRETSECRET" not in run.stdout
    assert run.status("sync.config") == "passed" and run.status("pod.workspace") == "passed"

    log.write_text(f"{old} ERROR : x.png: storageQuotaExceeded\n{now} INFO  : y.png: Copied (new)\n")
    assert sync_pod.podcheck(*SELECT).status("sync.errors") == "passed"


def test_sync_disabled_skips_the_area(cpu_pod):
    cpu_pod.configure(sync={"enabled": False})
    run = cpu_pod.podcheck(*SELECT)
    for check in ("sync.config", "sync.running", "sync.per_user", "sync.errors"):
        assert run.status(check) == "skipped"
        assert run.result(check)["message"] == "sync is off ([sync] enabled = false)"
    assert run.status("pod.workspace") == "passed"


def test_shipped_loop_runs_without_podcheck_installed(sync_pod, tmp_path):
    """The copy a remote pod gets (podcheck/{__init__,files,paths,users,syncloop}.py) runs on a bare python3."""
    pod = sync_pod.live()
    root = syncloop._ship(pod)
    settings = syncloop.settings(pod.config)
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    bare = Path(getattr(sys, "_base_executable", sys.executable))
    probe = subprocess.run([str(bare), "-c", "import podcheck"], capture_output=True, cwd=tmp_path)
    assert probe.returncode != 0, "the base python must not see the installed podcheck"
    proc = subprocess.Popen([str(bare), "-m", "podcheck.syncloop", str(path)],
                            env={"PATH": os.environ["PATH"], "PYTHONPATH": root}, cwd=tmp_path,
                            start_new_session=True)
    try:
        status = first_pass(pod)
        assert status["ok"], syncloop.status(pod)
        assert (sync_pod.drive / "ComfyUI-Output" / "output" / "bob" / "bob-001.png").exists()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0, "SIGTERM ends the loop cleanly"


# --- pure parts ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv, expected", [
    (["rclone", "sync", "/w/output/a", "gdrive:r/output/a", "--transfers", "8"], ("sync", "/w/output/a", "gdrive:r/output/a")),
    (["/usr/bin/rclone", "--config", "/c.conf", "copy", "-v", "--exclude", "*.tmp", "/src", "d:x"], ("copy", "/src", "d:x")),
    (["rclone", "move", "--min-age=30s", "a", "b:c"], ("move", "a", "b:c")),
    (["rclone", "lsd", "gdrive:"], None),
    (["rclone", "config", "dump"], None),
    (["python", "sync", "a", "b"], None),
])
def test_parse_transfer(argv, expected):
    got = rclone.parse_transfer(argv)
    assert (None if got is None else (got.verb, got.src, got.dst)) == expected


def test_redaction_and_chain():
    dump = {"gdrive": {"type": "drive", "token": '{"access_token":"ya29.x"}', "client_secret": "cs",
                       "team_drive": "0A", "service_account_credentials": "{...}"},
            "crypt": {"type": "crypt", "remote": "gdrive:enc", "password": "p", "password2": "q"},
            "users": {"type": "alias", "remote": "crypt:users"}}
    shown = rclone.redact(dump)
    assert shown["gdrive"]["token"] == shown["gdrive"]["client_secret"] == "***"
    assert shown["gdrive"]["service_account_credentials"] == "***" and shown["gdrive"]["team_drive"] == "0A"
    assert shown["crypt"]["password"] == shown["crypt"]["password2"] == "***"
    assert [name for name, _ in rclone.chain(dump, "users")] == ["users", "crypt", "gdrive"]
    line = 'Token: {"access_token":"ya29.a0AfH6","refresh_token":"1//0gabcdefghijklmnopqrstuv"} pass=hunter2'
    assert "ya29.a0" not in rclone.redact_line(line) and "hunter2" not in rclone.redact_line(line)
    assert "[private key redacted]" == rclone.redact_line(FAKE_KEY.strip())
    assert rclone.service_account_problem('{"type": "service_account"}') == "lacks client_email, private_key"
    assert rclone.service_account_problem("nope") == "is not JSON"


def test_judge_mapping():
    judge = lambda src, dst: syncloop.judge_mapping("/w", "/w/ComfyUI", "gdrive", "Out", src, dst)  # noqa: E731
    assert judge("/w/output/alice", "gdrive:Out/output/alice") is None
    assert judge("/w/output/alice/", "gdrive:Out/output/alice/") is None
    assert "syncs all of /w/output" in judge("/w/output", "gdrive:Out/output")
    assert "syncs all of /w/ComfyUI/output" in judge("/w/ComfyUI/output/", "gdrive:Out")
    assert "not to gdrive:Out/input/bob" in judge("/w/input/bob", "gdrive:Out/input/alice")
    assert judge("/w/models", "gdrive:models") is None
    assert judge("/w/output/alice/sub", "gdrive:anything") is None
    assert judge("relative/output", "gdrive:x") is None
    settings = {"workspace": "/w", "folders": ["output", "workflows"], "remote": "g", "remote_root": ""}
    assert syncloop.plan(settings, ["alice", "../evil"]) == [
        ("/w/output/alice", "g:output/alice"), ("/w/workflows/alice", "g:workflows/alice")]


def test_module_examples():
    """The examples in the modules' docstrings hold."""
    for module in (rclone,):
        result = doctest.testmod(module)
        assert result.attempted and not result.failed, module.__name__
