"""sync.* on simulated pods with real rclone: an alias remote standing in for Drive (no network) for the
loop, drive sections for the config rules, the managed loop started and killed for real."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import podsim
import pytest

from podcheck import syncloop
from podcheck.domain import rclone, syncloop_control
from podcheck.host import procs

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
    syncloop_control.stop(cpu_pod.live(), timeout=3)



def first_pass(pod):
    return podsim.wait_for(lambda: (syncloop_control.status(pod) or {}).get("last_pass"), what="the loop's first pass")


def test_managed_loop_syncs_each_user_and_all_checks_pass(sync_pod):
    pod = sync_pod.live()
    started = syncloop_control.start(pod)
    assert started.changed and started.pid
    first_pass(pod)
    again = syncloop_control.start(pod)
    assert not again.changed and again.pid == started.pid, "a second start must leave the running loop alone"

    remote = sync_pod.drive / "ComfyUI-Output" / "output"
    assert (remote / "alice" / "alice-001.png").read_bytes() == b"png" * 100
    assert (remote / "bob" / "bob-001.png").exists()
    assert not (remote / "alice" / "half.partial").exists(), "*.partial is excluded"
    assert not (remote / "bad name").exists(), "an invalid user name never becomes a path"
    status = syncloop_control.status(pod)
    assert status["last_pass"]["ok"] and status["last_success"]
    assert status["users"]["bad name"] == {"skipped": "user name contains whitespace"}
    assert status["users"]["alice"]["output"]["rc"] == 0
    log = Path(pod.config.sync.log).read_text()
    assert "podcheck-syncloop: alice output: rclone copy" in log, "copy is the default mode: it never deletes remotely"

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

    assert syncloop_control.stop(pod) == started.pid
    assert syncloop_control.running_pid(pod) is None
    assert (syncloop_control.status(pod) or {}).get("stopped")


def backed_up(drive: Path, user: str, count: int = 6) -> dict[str, bytes]:
    """`count` of the user's outputs on the remote (their Drive backup), as {name: content}."""
    folder = drive / "ComfyUI-Output" / "output" / user
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"{user}-backup-{i}.png").write_bytes(b"backup %d" % i)
    return remote_files(drive, user)


def remote_files(drive: Path, user: str) -> dict[str, bytes]:
    folder = drive / "ComfyUI-Output" / "output" / user
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())} if folder.is_dir() else {}


def test_fix_on_a_new_workspace_never_wipes_the_remote(cpu_pod, tmp_path):
    """The attack: a bare workspace, a remote holding alice's outputs; `--fix` creates output/alice
    empty and starts the loop. Once in the old default `sync` mode, that pass deleted the backup."""
    drive = tmp_path / "drive"
    conf = write_conf(tmp_path / "rclone.conf", f"[gdrive]\ntype = alias\nremote = {drive}\n")
    backup = backed_up(drive, "alice")
    cpu_pod.configure(sync={"rclone_config": str(conf), "remote": "gdrive", "min_age": "0s", "interval_seconds": 1})
    try:
        run = cpu_pod.podcheck("--fix", "--select", "isolation.user_dirs", "--select", "sync", "--json", "-")
        assert {r["id"]: r["status"] for r in run.json["repairs"]}.get("sync.start") == "changed", run.stdout
        pod = cpu_pod.live()
        podsim.wait_for(lambda: (syncloop_control.status(pod) or {}).get("passes", 0) >= 2, what="two passes")
        assert (cpu_pod.workspace / "output" / "alice").is_dir()
        assert remote_files(drive, "alice") == backup, "the default mode (copy) deletes nothing remotely"

        syncloop_control.stop(pod, timeout=3)
        cpu_pod.configure(sync={"mode": "sync"})
        started = syncloop_control.start(cpu_pod.live())
        podsim.wait_for(lambda: (syncloop_control.status(pod) or {}).get("passes", 0) >= 2
                        and (syncloop_control.status(pod) or {}).get("pid") == started.pid, what="two sync passes")
        assert remote_files(drive, "alice") == backup, "an empty new folder is never mirrored over the backup"
        result = syncloop_control.status(pod)["users"]["alice"]["output"]
        assert result["refused"] and "holds no file while" in result["error"] and "holds 6" in result["error"]
        run = cpu_pod.podcheck("--select", "sync.running", "--json", "-")
        assert run.status("sync.running") == "failed"
        assert "protects the remote" in run.result("sync.running")["message"]
        assert "rclone copy gdrive:ComfyUI-Output/output/alice" in run.result("sync.running")["message"]
    finally:
        syncloop_control.stop(cpu_pod.live(), timeout=3)


def test_user_folder_that_was_a_link_out_of_the_workspace(cpu_pod, tmp_path):
    """output/alice was a link out of the workspace: user_dirs replaces it by an empty folder, and a
    `sync` loop must not mirror that folder over alice's backup."""
    drive = tmp_path / "drive"
    conf = write_conf(tmp_path / "rclone.conf", f"[gdrive]\ntype = alias\nremote = {drive}\n")
    backup = backed_up(drive, "alice")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.png").write_bytes(b"mine")
    (cpu_pod.workspace / "output").mkdir()
    (cpu_pod.workspace / "output" / "alice").symlink_to(elsewhere)
    cpu_pod.configure(sync={"rclone_config": str(conf), "remote": "gdrive", "min_age": "0s", "interval_seconds": 1,
                            "mode": "sync"})
    try:
        run = cpu_pod.podcheck("--fix", "--select", "isolation.user_dirs", "--select", "sync", "--json", "-")
        assert {r["id"]: r["status"] for r in run.json["repairs"]}.get("isolation.user_dirs") == "changed", run.stdout
        assert not (cpu_pod.workspace / "output" / "alice").is_symlink()
        pod = cpu_pod.live()
        podsim.wait_for(lambda: (syncloop_control.status(pod) or {}).get("passes", 0) >= 2, what="two passes")
        assert remote_files(drive, "alice") == backup
        assert (elsewhere / "mine.png").read_bytes() == b"mine", "the link's target is left alone"
    finally:
        syncloop_control.stop(cpu_pod.live(), timeout=3)


def test_sync_mode_deletes_at_most_max_delete(sync_pod):
    """A folder that still holds a file but lost the rest: `--max-delete` bounds what one pass removes."""
    backed_up(sync_pod.drive, "alice", count=6)
    sync_pod.configure(sync={"mode": "sync", "max_delete": 2})
    pod = sync_pod.live()
    syncloop_control.start(pod)
    first_pass(pod)
    left = [n for n in remote_files(sync_pod.drive, "alice") if "backup" in n]
    assert len(left) >= 4, left
    assert syncloop_control.status(pod)["users"]["alice"]["output"]["rc"] != 0, "rclone reports the limit as an error"


AWS_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYPLANTEDKEY"  # 40 characters, as AWS makes them
CAUSE = ("couldn't fetch token: Post \"https://oauth2.googleapis.com/token\": dial tcp 142.250.74.10:443: "
         "connect: connection refused")


def test_cut_messages_leak_no_piece_of_a_secret(sync_pod, spawn):
    """The attack: sync.running quotes a hand-run rclone's argv cut at 80 characters, sync.errors a log
    line cut at 220; both cuts came before redaction, so 28 and 12 characters of a 40-character
    AWS_SECRET_ACCESS_KEY leaked in every format. And redaction ate rclone's words around tokens."""
    spawn(["rclone", "rcd", "--rc-addr", "127.0.0.1:0", "--rc-no-auth", "--user-agent", AWS_SECRET,
                         "--config", str(sync_pod.root / "rclone.conf")])
    podsim.wait_for(lambda: any("rcd" in p.args for p in procs.listing(sync_pod.live())), what="rclone rcd")
    log = Path(sync_pod.live().config.sync.log)
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text((f"{time.strftime('%Y/%m/%d %H:%M:%S')} ERROR : Failed to create file system: {CAUSE}; via "
                    ).ljust(200, ".") + f" {AWS_SECRET} retrying\n")
    sync_pod.configure(sync={"process_pattern": "rclone rcd"})
    out = sync_pod.root / "out"
    run = sync_pod.podcheck("--select", "sync.running", "--select", "sync.errors", "--json", str(out / "c.json"),
                            "--junit-xml", str(out / "j.xml"), "--prometheus", str(out / "p.prom"), "-v",
                            env={"AWS_SECRET_ACCESS_KEY": AWS_SECRET})
    results = json.loads((out / "c.json").read_text())["results"]
    messages = {r["id"]: r["message"] for r in results}
    assert "--rc-no-auth --user-agent [REDACTED]" in messages["sync.running"], messages
    assert "fetch token: Post" in messages["sync.errors"] and "[REDACTED]" in messages["sync.errors"], messages
    assert "dial tcp 142.250.74.10:443: connect: connection refused" in messages["sync.errors"]
    for where, text in {"stdout": run.stdout, "stderr": run.stderr, **{p.name: p.read_text() for p in out.iterdir()}}.items():
        pieces = [AWS_SECRET[i:i + 8] for i in range(len(AWS_SECRET) - 7) if AWS_SECRET[i:i + 8] in text]
        assert not pieces, f"{where}: {pieces}"


def test_loop_killed_is_dead(sync_pod):
    pod = sync_pod.live()
    pid = syncloop_control.start(pod).pid
    first_pass(pod)
    os.killpg(pid, signal.SIGKILL)
    podsim.wait_for(lambda: syncloop_control.running_pid(pod) is None, what="the loop to die")

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
    syncloop_control.start(pod)
    first_pass(pod)
    time.sleep(1.4)
    run = sync_pod.podcheck(*SELECT)
    assert run.status("sync.running") == "failed"
    assert "is stale: its last successful pass was" in run.result("sync.running")["message"]
    assert run.status("sync.per_user") == "passed" and run.status("sync.config") == "passed"
    syncloop_control.stop(pod)

    # The remote's folder cannot be created (its parent is a file): every pass fails, and the check says why.
    blocker = sync_pod.root / "blocker"
    blocker.write_text("a file, not a folder")
    write_conf(sync_pod.root / "rclone.conf", f"[gdrive]\ntype = alias\nremote = {blocker}/drive\n")
    pod = sync_pod.live()
    syncloop_control.start(pod)
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
    root = syncloop_control.ship(pod)
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
        assert status["ok"], syncloop_control.status(pod)
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


def test_shipped_files_hold_everything_the_loop_imports():
    """SHIPPED is closed under podcheck imports: every podcheck module a shipped file imports (in
    functions too), and the packages on its way, are shipped, or a remote pod's loop fails to start."""
    import ast

    package = Path(syncloop.__file__).parent
    shipped = set(syncloop.SHIPPED)
    assert "syncloop.py" in shipped
    for name in sorted(shipped):
        needed: set[str] = set()
        for node in ast.walk(ast.parse((package / name).read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            else:
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for parts in (m.split(".")[1:] for m in modules if m.split(".")[0] == "podcheck"):
                for path in ("/".join([*parts, "__init__.py"]), "/".join(parts) + ".py"):
                    if (package / path).is_file():  # a module (not a name in one), and the packages on its way
                        needed |= {path, *("/".join([*parts[:k], "__init__.py"]) for k in range(len(parts)))}
        assert needed <= shipped, f"{name} imports what SHIPPED lacks: {sorted(needed - shipped)}"


# --- what real users and real rclone 1.60 configs do ---------------------------------------------------

def encrypt(conf: Path, password: str) -> None:
    """Encrypt an rclone config with real rclone's own menu (`rclone config`: s, a). rclone 1.60 reads
    the password from a terminal (it has no `config encryption set`), so a pty answers its prompts."""
    import pty
    import select

    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("rclone", ["rclone", "config", "--config", str(conf)])
    seen = b""
    for prompt, answer in ((b"q>", "s"), (b"a/q>", "a"), (b"password:", password), (b"password:", password),
                           (b"q>", "q"), (b"q>", "q")):
        deadline = time.monotonic() + 20
        while prompt not in seen and time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                try:
                    seen += os.read(fd, 4096)
                except OSError:
                    break
        seen = b""
        os.write(fd, (answer + "\n").encode())
    os.waitpid(pid, 0)
    os.close(fd)
    assert "RCLONE_ENCRYPT_V0:" in conf.read_text(), conf.read_text()


def _fix(pod, env=None):
    run = pod.podcheck("--fix", "--select", "sync.config", "--json", "-", env=env)
    return run, next(r for r in run.json["repairs"] if r["id"] == "sync.config")


FOLDER_ID = "1AbCdEfGhIjKlMnOpQrStUvWxYz012345"  # a folder's ID (33 characters)
OTHER_DRIVE = "0AZyxWvuTsrQpoNmlkj"                # a drive's own ID, not the team_drive


def test_team_drive_with_a_root_folder_inside_it_is_left_alone(sync_pod, tmp_path):
    """rclone takes root_folder_id as the root and keeps the Shared Drive's scope: right when the folder is
    in it. podcheck cannot ask Google here; it empties root_folder_id only when the config shows it to be
    another drive's root (a drive-shaped ID other than team_drive)."""
    key = service_account(tmp_path / "sa.json")
    text = (f"[gdrive]\ntype = drive\nscope = drive\nteam_drive = 0ABCdefGHIjklMNOpqr\n"
            f"service_account_file = {key}\nroot_folder_id = {FOLDER_ID}\n")
    conf = write_conf(tmp_path / "drive.conf", text)
    sync_pod.configure(sync={"rclone_config": str(conf), "remote": "gdrive"})
    run = sync_pod.podcheck(*SELECT)
    assert run.status("sync.config") == "passed", run.result("sync.config")["message"]
    run, fixed = _fix(sync_pod)
    assert fixed["status"] == "unchanged", fixed
    assert conf.read_text() == text and not list(tmp_path.glob("drive.conf.podcheck-*.bak"))

    write_conf(conf, text.replace(FOLDER_ID, OTHER_DRIVE))
    run = sync_pod.podcheck(*SELECT)
    msg = run.result("sync.config")["message"]
    assert run.status("sync.config") == "failed"
    assert f"[gdrive] sets root_folder_id = {OTHER_DRIVE}, the root of another drive, with team_drive" in msg
    run, fixed = _fix(sync_pod)
    assert fixed["status"] == "changed" and "[gdrive] root_folder_id = (empty)" in fixed["message"], fixed
    assert "root_folder_id = \n" in conf.read_text() and "team_drive = 0ABCdefGHIjklMNOpqr" in conf.read_text()
    assert run.status("sync.config") == "passed"


def test_an_encrypted_config_needs_its_password(sync_pod, tmp_path):
    key = service_account(tmp_path / "sa.json")
    conf = write_conf(tmp_path / "drive.conf", f"[gdrive]\ntype = drive\nscope = drive\nteam_drive = "
                      f"0ABCdefGHIjklMNOpqr\nservice_account_file = {key}\nroot_folder_id = {OTHER_DRIVE}\n")
    encrypt(conf, "hunter22")
    sync_pod.configure(sync={"rclone_config": str(conf), "remote": "gdrive"})
    unset = {"RCLONE_CONFIG_PASS": ""}  # rclone takes an empty one as none
    run = sync_pod.podcheck(*SELECT, env=unset)
    msg = run.result("sync.config")["message"]
    assert run.status("sync.config") == "failed"
    assert f"rclone config {conf} is encrypted (RCLONE_ENCRYPT_V0:) and RCLONE_CONFIG_PASS is not set" in msg, msg
    _, fixed = _fix(sync_pod, env=unset)
    assert fixed["status"] == "failed" and "set RCLONE_CONFIG_PASS" in fixed["message"]
    assert "create it with" not in fixed["message"], fixed["message"]

    run = sync_pod.podcheck(*SELECT, env={"RCLONE_CONFIG_PASS": "wrong"})
    assert "RCLONE_CONFIG_PASS does not decrypt it" in run.result("sync.config")["message"]

    # with its password: judged, and repaired through rclone, which writes it encrypted again
    run = sync_pod.podcheck(*SELECT, env={"RCLONE_CONFIG_PASS": "hunter22"})
    assert "the root of another drive" in run.result("sync.config")["message"]
    run, fixed = _fix(sync_pod, env={"RCLONE_CONFIG_PASS": "hunter22"})
    assert fixed["status"] == "changed", fixed
    assert "RCLONE_ENCRYPT_V0:" in conf.read_text() and OTHER_DRIVE not in conf.read_text()
    assert run.status("sync.config") == "passed"
    assert "hunter22" not in run.stdout
    (backup,) = tmp_path.glob("drive.conf.podcheck-*.bak")
    assert "RCLONE_ENCRYPT_V0:" in backup.read_text()


def test_a_refused_connection_is_a_network_error_not_an_auth_failure(sync_pod, tmp_path):
    """Real rclone 1.60 syncing to Drive through a proxy that refuses: its token refresh fails with
    "couldn't fetch token ... connect: connection refused"."""
    conf = write_conf(tmp_path / "token.conf", (
        "[gdrive]\ntype = drive\nscope = drive\nclient_id = 123.apps.googleusercontent.com\n"
        "client_secret = GOCSPX-abcdef\nteam_drive = 0ABCdefGHIjklMNOpqr\ntoken = "
        '{"access_token":"ya29.old","token_type":"Bearer","refresh_token":"1//0gabcdefghijklmnopqrstuvwxyz",'
        '"expiry":"2020-01-01T00:00:00Z"}\n'))
    log = Path(sync_pod.state_dir) / "sync.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["rclone", "sync", str(sync_pod.workspace / "output" / "alice"),
                           "gdrive:ComfyUI-Output/output/alice", "--config", str(conf), "--log-file", str(log),
                           "--retries", "1", "--low-level-retries", "1", "--contimeout", "5s"],
                          env={**os.environ, "HTTPS_PROXY": "http://127.0.0.1:1"}, capture_output=True, timeout=60)
    assert done.returncode != 0 and "connection refused" in log.read_text()
    run = sync_pod.podcheck(*SELECT)
    msg = run.result("sync.errors")["message"]
    assert run.status("sync.errors") == "failed"
    assert "x network error (rclone cannot reach Google" in msg and "auth error" not in msg, msg
    assert "connect: connection refused" in msg, msg


@pytest.mark.parametrize("how", ["bash -c", "script"])
def test_a_users_own_sync_loop_is_judged_with_the_default_config(sync_pod, spawn, tmp_path, how):
    """The seeds' privacy bug: a loop syncing all of output/ every few seconds, with no process_pattern set."""
    ws = sync_pod.workspace
    conf = sync_pod.config_path.parent / "rclone.conf"
    body = f'while true; do rclone sync "{ws}/output" gdrive:ComfyUI-Output/output --config "{conf}"; sleep 3; done'
    if how == "script":
        script = tmp_path / "sync-outputs.sh"
        script.write_text("#!/bin/bash\n" + body.replace("; ", "\n  ").replace("do\n  ", "do\n  ") + "\n")
        spawn(["bash", str(script)])
    else:
        spawn(["bash", "-c", body])
    podsim.wait_for(lambda: (sync_pod.drive / "ComfyUI-Output" / "output" / "alice").exists(), what="the loop's first pass")
    run = sync_pod.podcheck(*SELECT)
    msg = run.result("sync.per_user")["message"]
    assert run.status("sync.per_user") == "failed", msg
    assert f"syncs all of {ws}/output to gdrive:ComfyUI-Output/output" in msg
    assert (f"{script} (pid" if how == "script" else "bash -c loop (pid") in msg, msg
    assert run.status("sync.running") == "passed", run.result("sync.running")["message"]
    assert "runs rclone (found by default)" in run.result("sync.running")["message"]


def test_a_shell_that_runs_rclone_but_no_transfer_is_no_sync_loop(sync_pod, spawn):
    spawn(["bash", "-c", "rclone version > /dev/null; rclone listremotes --config /dev/null; sleep 60"])
    run = sync_pod.podcheck(*SELECT)
    msg = run.result("sync.running")["message"]
    assert run.status("sync.running") == "failed" and "no shell loop or script runs rclone" in msg, msg
    assert run.status("sync.per_user") == "skipped"
