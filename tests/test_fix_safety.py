"""Repairs that touch shared data, each on a real fault: links removed as links, real folders and files
moved to quarantine with every file, stale kernel caches deleted only inside their roots (a planted
symlink to a user's file leaves the file alone), rclone.conf backed up before it changes, /free and
restarts only for an idle ComfyUI."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import fixsim
import podsim
import pytest
from sim_comfyui import comfy_log, comfy_pod, user_flags

from podcheck import config
from podcheck.fix.fixer import run_one


def repairs(run):
    return {r["id"]: r for r in run.json["repairs"]}


def files_under(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()}


def quarantined(pod) -> Path:
    (stamp,) = (pod.state_dir / "quarantine").iterdir()
    return stamp


def gpu_changed(ws: Path) -> tuple[float, float]:
    """A GPU history whose GPU changed 100 s ago (an A100 before, an RTX 5090 now): (now, when it changed)."""
    now = time.time()
    changed_at = now - 100
    (ws / ".podcheck").mkdir(parents=True)
    (ws / ".podcheck" / "gpu-history.json").write_text(json.dumps({"entries": [
        {"fingerprint": "NVIDIA A100-SXM4-80GB:8.0", "first_seen": now - 86400, "last_seen": changed_at - 10},
        {"fingerprint": "NVIDIA GeForce RTX 5090:12.0", "first_seen": changed_at, "last_seen": changed_at}]}))
    return now, changed_at


@pytest.fixture
def pod(tmp_path, torch_python):
    pod = podsim.cpu_pod(tmp_path, torch_python)
    pod.configure(pod={"users": ["alice", "bob"]}, fix={"ffmpeg_install": ["true"]})
    (pod.workspace / "ComfyUI" / "user").mkdir(parents=True)
    for user in ("alice", "bob"):
        for kind in ("output", "input", "workflows", "temp"):
            (pod.workspace / kind / user).mkdir(parents=True)
    (pod.workspace / "output" / "alice" / "img_0001.png").write_bytes(b"\x89PNG alice")
    (pod.workspace / "workflows" / "bob" / "flow.json").write_text('{"bob": 1}')
    return pod


def test_unlink_removes_shared_links_as_links_and_quarantines_a_shared_folder(pod):
    ws = pod.workspace
    (ws / "ComfyUI" / "output").symlink_to(ws / "output" / "alice")  # the last pod to start wins
    (ws / "ComfyUI" / "user" / "workflows").symlink_to(ws / "workflows" / "bob")
    shared_input = ws / "ComfyUI" / "input"
    (shared_input / "uploads").mkdir(parents=True)  # a real folder every ComfyUI without flags reads
    (shared_input / "example.png").write_bytes(b"example")
    (shared_input / "uploads" / "carol.jpg").write_bytes(b"carol's upload")
    before_input = files_under(shared_input)
    before_users = {kind: files_under(ws / kind) for kind in ("output", "workflows")}
    run = fixsim.fix_as_planned(pod, "--select", "isolation")
    assert run.rc == 0, run.stdout + run.stderr
    unlink = repairs(run)["isolation.unlink"]
    assert unlink["status"] == "changed"
    assert f"removed the symlink {ws}/ComfyUI/output -> {ws}/output/alice (its target is untouched)" in unlink["message"]
    assert f"removed the symlink {ws}/ComfyUI/user/workflows -> {ws}/workflows/bob" in unlink["message"]
    where = quarantined(pod) / str(shared_input).lstrip("/")
    assert f"moved the shared folder {shared_input} (3 entries) to {where}" in unlink["message"]
    assert files_under(where) == before_input  # every file, unchanged
    assert not (ws / "ComfyUI" / "output").exists() and not (ws / "ComfyUI" / "output").is_symlink()
    assert {kind: files_under(ws / kind) for kind in ("output", "workflows")} == before_users
    assert run.status("isolation.no_shared_links") == "passed"


def test_user_dirs_replaces_bad_links_by_folders_and_reports_bad_names(pod):
    ws = pod.workspace
    pod.configure(pod={"users": ["alice", "bob", "../evil"]})
    shutil.rmtree(ws / "output" / "bob")
    (ws / "output" / "bob").symlink_to(ws / "output" / "alice")  # bob writes into alice's folder
    shutil.rmtree(ws / "input" / "bob")
    shutil.rmtree(ws / "workflows" / "alice")
    (ws / "workflows" / "alice").write_text("a file where a folder belongs")
    run = fixsim.fix_as_planned(pod, "--select", "isolation.user_dirs")
    assert run.rc == 1  # the bad name needs a person
    dirs = repairs(run)["isolation.user_dirs"]
    assert dirs["status"] == "changed"  # the valid users are served; the check keeps failing on the bad name
    assert "'../evil' contains '/'" in dirs["message"]
    assert f"replaced the symlink {ws}/output/bob -> {ws}/output/alice by a real folder" in dirs["message"]
    moved = quarantined(pod) / str(ws / "workflows" / "alice").lstrip("/")
    assert f"moved the file at {ws}/workflows/alice to {moved}" in dirs["message"]
    assert moved.read_text() == "a file where a folder belongs"
    assert (ws / "output" / "bob").is_dir() and not (ws / "output" / "bob").is_symlink()
    assert (ws / "input" / "bob").is_dir() and (ws / "workflows" / "alice").is_dir()
    assert (ws / "output" / "alice" / "img_0001.png").read_bytes() == b"\x89PNG alice"
    assert "'../evil' contains '/'" in run.result("isolation.user_dirs")["message"]


def test_cache_clear_deletes_stale_kernels_only_inside_the_cache_roots(tmp_path, monkeypatch):
    home, ws = tmp_path / "home", tmp_path / "workspace"
    for var in ("TRITON_CACHE_DIR", "TRITON_HOME", "XDG_CACHE_HOME", "CUDA_CACHE_PATH", "TORCH_EXTENSIONS_DIR",
                "PYTORCH_KERNEL_CACHE_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    now, changed_at = gpu_changed(ws)

    def put(path: Path, data: bytes, age: float) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (now - age, now - age))
        return path

    alice = ws / "output" / "alice"
    keep = put(alice / "keep.png", b"alice's picture", 3600)  # written under the old GPU, but a user's file
    old_kernel = put(home / ".triton" / "cache" / ("a1" * 32) / "kernel.cubin", b"x" * 4096, 3600)
    new_kernel = put(home / ".triton" / "cache" / ("b2" * 32) / "kernel.cubin", b"y" * 100, 10)
    old_inductor = put(tmp_path / "inductor" / "fxgraph" / "graph.py", b"z" * 1000, 3600)
    not_a_kernel = put(home / ".triton" / "cache" / "notes.txt", b"not triton's", 3600)  # not triton's layout
    (home / ".triton" / "cache" / "planted").symlink_to(keep)  # a symlink inside a root, to a user's file
    (home / ".triton" / "cache" / "planted-dir").symlink_to(alice)
    engine = put(alice / "tensorrt" / "ComfyUI_STAT_00001_.engine", b"engine", 3600)
    cfg = config.load(env={"PODCHECK_WORKSPACE": str(ws), "HOME": str(home)})
    planned = run_one(cfg, "caches.clear", dry_run=True)
    assert old_kernel.exists() and engine.exists() and planned.status == "skipped", planned.message
    result = run_one(cfg, "caches.clear")
    assert fixsim.unknowable(planned.commands) == fixsim.unknowable(result.commands) and result.commands
    assert result.status == "changed", result.message
    assert result.message.startswith("freed 5.0 KiB (Triton 4.0 KiB, TorchInductor 1000 B)"), result.message
    assert "moved 1 TensorRT engine(s) built on another GPU" in result.message
    assert not old_kernel.exists() and not old_inductor.exists()
    assert new_kernel.read_bytes() == b"y" * 100  # built for this GPU
    assert not_a_kernel.exists(), "only files laid out as the tool writes them are deleted"
    assert keep.read_bytes() == b"alice's picture" and (home / ".triton" / "cache" / "planted").is_symlink()
    assert (home / ".triton" / "cache" / "planted-dir").is_symlink() and (alice / "keep.png").exists()
    assert not engine.exists()
    (moved,) = (ws / ".podcheck" / "quarantine").rglob("*.engine")
    assert moved.read_bytes() == b"engine"
    again = run_one(cfg, "caches.clear")
    assert again.status == "unchanged" and "no cache built for another GPU" in again.message


def test_cache_clear_trusts_a_root_only_when_it_is_a_cache(tmp_path, monkeypatch):
    """The attack: TRITON_CACHE_DIR at a user's output folder, CUDA_CACHE_PATH at the workspace, and
    $HOME/.triton a link into a user's folder made caches.clear delete 16 user and ComfyUI files
    written under the old GPU. Such roots are refused, and said so; a real cache is still cleared."""
    home, ws = tmp_path / "home", tmp_path / "workspace"
    now, changed_at = gpu_changed(ws)

    def put(path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (now - 3600, now - 3600))  # written under the old GPU
        return path

    alice, bob = ws / "output" / "alice", ws / "output" / "bob"
    put(alice / "img_0001.png", b"alice")
    put(alice / "cache" / ("ab" * 32) / "looks-like-a-kernel.bin", b"alice's, shaped like triton's")
    put(bob / "triton-notes" / "cache" / ("cd" * 32) / "x.cubin", b"bob's, shaped like triton's")
    put(ws / "ComfyUI" / "main.py", b"comfy")
    put(ws / "ComfyUI" / "0" / "1" / "abc", b"comfy, shaped like CUDA's")
    put(ws / "index", b"a workspace file named like CUDA's index")
    checkout = tmp_path / "ext-checkout"
    subprocess.run(["git", "init", "-q", str(checkout)], check=True)
    put(checkout / "build" / "ext.so", b"a build inside a checkout")
    home.mkdir()
    (home / ".triton").symlink_to(bob / "triton-notes")  # $HOME/.triton/cache resolves into bob's folder
    real_cache = put(tmp_path / "inductor" / "fxgraph" / "old.py", b"a stale kernel")
    for var in ("TRITON_HOME", "XDG_CACHE_HOME", "PYTORCH_KERNEL_CACHE_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("TRITON_CACHE_DIR", str(alice / "cache"))
    monkeypatch.setenv("CUDA_CACHE_PATH", str(ws))
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(checkout))
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    before = {p: p.read_bytes() for p in [*ws.rglob("*"), *checkout.rglob("*")]
              if p.is_file() and not p.is_symlink() and ".podcheck" not in p.parts and ".git" not in p.parts}
    assert len(before) == 7

    result = run_one(config.load(env={"PODCHECK_WORKSPACE": str(ws), "HOME": str(home)}), "caches.clear")
    assert {p: p.read_bytes() for p in before} == before, "no user, ComfyUI or checkout file is deleted"
    assert result.status == "changed" and not real_cache.exists(), result.message
    assert f"TRITON_CACHE_DIR={alice}/cache is not a cache: it is users' files ({ws}/output)" in result.message
    assert f"CUDA_CACHE_PATH={ws} is not a cache: it is the workspace" in result.message
    assert f"TORCH_EXTENSIONS_DIR={checkout} is not a cache: it is in a git checkout" in result.message
    monkeypatch.delenv("TRITON_CACHE_DIR")  # now Triton's cache is $HOME/.triton/cache, i.e. bob's folder
    result = run_one(config.load(env={"PODCHECK_WORKSPACE": str(ws), "HOME": str(home)}), "caches.clear")
    assert {p: p.read_bytes() for p in before} == before
    assert f"{home}/.triton/cache is not a cache: it is users' files ({ws}/output) (it resolves to {bob}/triton-notes/cache)" \
        in result.message, result.message


def test_cache_file_layouts():
    from podcheck.domain.caches import is_cache_file
    assert is_cache_file("triton", "f" * 64 + "/k.cubin") and not is_cache_file("triton", "pics/k.cubin")
    assert is_cache_file("triton", "NGMNOUAKWJFCFBRYVOXKDVYOPTN4ZOLZ6UH4DFWNNZFPLAMEZYUQ/k.json")
    assert not is_cache_file("triton", "f" * 64 + "/deeper/k.cubin")
    assert is_cache_file("cuda", "index") and is_cache_file("cuda", "0/a/1f2e3d")
    assert not is_cache_file("cuda", "output/alice/img.png")
    assert is_cache_file("inductor", "fxgraph/ab/x") and not is_cache_file("inductor", "notes.txt")
    assert is_cache_file("torch_extensions", "py311_cu129/ext/ext.so")
    assert not is_cache_file("torch_extensions", "py311_cu129/ext/ext.cpp")


SA_KEY = {"type": "service_account", "client_email": "sync@proj.iam.gserviceaccount.com",
          "private_key": "-----BEGIN PRIVATE KEY-----\nMIIBVQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\n"}


def test_sync_config_backs_up_rclone_conf_then_sets_the_shared_drive(pod, tmp_path):
    key = tmp_path / "sa.json"
    key.write_text(json.dumps(SA_KEY))
    key.chmod(0o644)
    conf = tmp_path / "rclone.conf"
    original = (f"# managed by hand\n[gdrive]\ntype = drive\nscope = drive\nservice_account_file = {key}\n"
                "root_folder_id = 1AbCdEfGhIjK\n\n[other]\ntype = alias\nremote = /srv\n")
    conf.write_text(original)
    conf.chmod(0o644)
    pod.configure(sync={"rclone_config": str(conf), "remote": "gdrive"})
    # Google's Drive API cannot be reached here: this `rclone` answers `backend drives` as Drive would
    # for a service account that is a member of one Shared Drive, and runs the real rclone otherwise.
    shims = tmp_path / "shims"
    shims.mkdir()
    (shims / "rclone").write_text('#!/bin/sh\nif [ "$1" = backend ] && [ "$2" = drives ]; then\n'
                                  '  echo \'[{"id": "0ABCteamDrive", "kind": "drive#teamDrive", "name": "Renders"}]\'\n'
                                  f'  exit 0\nfi\nexec {shutil.which("rclone")} "$@"\n')
    (shims / "rclone").chmod(0o755)
    env = {"PATH": f"{shims}:{os.environ['PATH']}"}
    before = pod.podcheck("--select", "sync.config", "--json", "-", env=env)
    assert before.status("sync.config") == "failed"
    run = fixsim.fix_as_planned(pod, "--select", "sync.config", env=env)
    assert run.rc == 0, run.stdout + run.stderr
    fixed = repairs(run)["sync.config"]
    assert fixed["status"] == "changed"
    assert f"{conf}: mode 644 -> 600" in fixed["message"] and f"{key}: mode 644 -> 600" in fixed["message"]
    assert "[gdrive] team_drive = 0ABCteamDrive, root_folder_id = (empty)" in fixed["message"]
    (backup,) = tmp_path.glob("rclone.conf.podcheck-*.bak")
    assert f"(backup: {backup})" in fixed["message"]
    assert backup.read_text() == original and backup.stat().st_mode & 0o777 == 0o600
    text = conf.read_text()
    assert "team_drive = 0ABCteamDrive\n" in text and "root_folder_id = \n" in text
    assert text.startswith("# managed by hand\n[gdrive]\ntype = drive\nscope = drive\n") and "[other]\ntype = alias" in text
    assert conf.stat().st_mode & 0o777 == 0o600 and key.stat().st_mode & 0o777 == 0o600
    assert run.status("sync.config") == "passed"
    again = pod.podcheck("--fix", "--select", "sync.config", "--json", "-", env=env)
    assert repairs(again)["sync.config"]["status"] == "unchanged"


def test_sync_config_says_why_when_drive_cannot_be_asked(pod, tmp_path):
    key = tmp_path / "sa.json"
    key.write_text(json.dumps(SA_KEY))
    key.chmod(0o600)
    conf = tmp_path / "rclone.conf"
    conf.write_text(f"[gdrive]\ntype = drive\nservice_account_file = {key}\n")
    conf.chmod(0o600)
    pod.configure(sync={"rclone_config": str(conf), "remote": "gdrive"})
    run = pod.podcheck("--fix", "--select", "sync.config", "--json", "-")
    fixed = repairs(run)["sync.config"]
    assert run.rc == 1 and fixed["status"] == "failed"
    assert "`rclone backend drives gdrive:` did not answer" in fixed["message"] and "set team_drive by hand" in fixed["message"]
    assert "MIIBVQ" not in run.stdout  # the key never shows
    assert not list(tmp_path.glob("rclone.conf.podcheck-*.bak"))  # nothing changed, nothing backed up


def queue_prompt(port: int) -> None:
    body = json.dumps({"prompt": {"1": {"class_type": "KSampler", "inputs": {}}}}).encode()
    req = urllib.request.Request(f"http://127.0.0.1:{port}/prompt", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def clear_queue(port: int) -> None:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/queue", data=b'{"clear": true}', method="POST",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req, timeout=5).read()


def stats(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=5) as resp:
        return json.loads(resp.read())


def test_memory_free_asks_an_idle_comfyui_only(tmp_path, torch_python, launcher):  # noqa: F811
    pod = comfy_pod(tmp_path, torch_python, sage="off")
    pod.configure(memory={"min_ram_available_gib": 100000.0}, fix={"ffmpeg_install": ["true"]})
    comfy = launcher.start(pod.workspace / "ComfyUI", *user_flags(pod.workspace, "alice"), python=torch_python,
                           log=comfy_log(pod))
    pod.configure(comfyui={"port": comfy.port})
    queue_prompt(comfy.port)
    busy = pod.podcheck("--fix", "--select", "memory.ram", "--json", "-")
    freed = repairs(busy)["memory.free"]
    assert freed["status"] == "skipped" and "is busy (0 running, 1 queued)" in freed["message"]
    assert stats(comfy.port)["standin"]["free_calls"] == []
    clear_queue(comfy.port)
    idle = fixsim.fix_as_planned(pod, "--select", "memory.ram")
    freed = repairs(idle)["memory.free"]
    assert freed["status"] == "changed" and f"pid {comfy.pid}" in freed["message"]
    calls = stats(comfy.port)["standin"]["free_calls"]
    assert len(calls) == 1 and calls[0].get("unload_models") is True and calls[0].get("free_memory") is True
    assert idle.rc == 1  # the stand-in frees nothing: the check still says so


def test_relaunch_restarts_an_idle_comfyui_with_sage_and_never_a_busy_one(tmp_path, launcher):  # noqa: F811
    python = fixsim.sage_python(tmp_path / "venv")
    pod = comfy_pod(tmp_path, python, sage="required")
    pod.configure(fix={"ffmpeg_install": ["true"], "launch_timeout": 60.0})
    try:
        comfy = launcher.start(pod.workspace / "ComfyUI", *user_flags(pod.workspace, "alice"), python=python,
                               log=comfy_log(pod))
        pod.configure(comfyui={"port": comfy.port, "listen": "127.0.0.1"})
        queue_prompt(comfy.port)
        busy = pod.podcheck("--fix", "--select", "comfyui.launch_flags", "--json", "-")
        relaunch = repairs(busy)["comfyui.relaunch"]
        assert relaunch["status"] == "skipped", relaunch
        assert "is busy (0 running, 1 queued): not restarted (a running generation is never killed)" in relaunch["message"]
        assert comfy.process.poll() is None and busy.status("comfyui.launch_flags") == "failed"
        clear_queue(comfy.port)
        idle = fixsim.fix_as_planned(pod, "--select", "comfyui.launch_flags")
        assert idle.rc == 0, idle.stdout + idle.stderr
        relaunch = repairs(idle)["comfyui.relaunch"]
        assert relaunch["status"] == "changed" and f"restarted ComfyUI for alice: pid {comfy.pid} -> " in relaunch["message"]
        assert "--use-sage-attention" in relaunch["message"]
        comfy.process.wait(10)
        argv = stats(comfy.port)["system"]["argv"]
        assert "--use-sage-attention" in argv and argv[argv.index("--output-directory") + 1].endswith("/output/alice")
    finally:
        fixsim.stop_pod(tmp_path)


def test_links_planted_in_the_state_dir_are_refused_not_written_through(pod, tmp_path):
    """The state dir sits on a volume others write: a link planted as oom.json, markers.json,
    last-fix.json, fix.log or quarantine/ once sent podcheck's writes (and quarantined user files)
    to its target. Each is refused with a clear message; every target is left as it was."""
    state, victims = pod.state_dir, tmp_path / "victims"
    state.mkdir(parents=True, exist_ok=True)
    victims.mkdir()
    (victims / "elsewhere").mkdir()
    for name in ("oom.json", "markers.json", "last-fix.json", "fix.log"):
        (victims / name).write_text(f"the victim's {name}\n")
        (state / name).symlink_to(victims / name)
    (state / "quarantine").symlink_to(victims / "elsewhere")
    before = fixsim.tree(victims) | {"content": [p.read_text() for p in sorted(victims.glob("*.*"))]}

    run = pod.podcheck("--select", "memory", "--json", "-")
    assert "Traceback" not in run.stdout + run.stderr
    assert (victims / "oom.json").read_text() == "the victim's oom.json\n", "a plain check wrote through oom.json"
    assert "refusing to write" in json.dumps(run.json), "the refusal is said, not silent"

    shared_input = pod.workspace / "ComfyUI" / "input"
    (shared_input / "uploads").mkdir(parents=True)
    (shared_input / "carol.jpg").write_bytes(b"carol's upload")
    (pod.workspace / "ComfyUI" / "output").symlink_to(pod.workspace / "output" / "alice")
    run = pod.podcheck("--fix", "--select", "isolation", "--json", "-")
    assert "Traceback" not in run.stdout + run.stderr
    assert (fixsim.tree(victims) | {"content": [p.read_text() for p in sorted(victims.glob("*.*"))]}) == before
    assert (shared_input / "carol.jpg").read_bytes() == b"carol's upload", "a refused quarantine moves nothing"
    unlink = repairs(run)["isolation.unlink"]
    assert unlink["status"] == "failed" and "symlink podcheck did not make" in unlink["message"], unlink
    assert "cannot keep this fix's report: refusing to write" in run.stderr
    assert all((state / n).is_symlink() for n in ("oom.json", "markers.json", "last-fix.json", "fix.log"))


def test_state_records_hold_no_credentials(pod):
    """The attack: a password in `[torch] index_url` and a `__token__:PASS@` in `[fix] pip_args` were
    written in clear to last-fix.json and markers.json, on the shared volume."""
    from podcheck.fix import fixer
    from podcheck.fix.markers import Markers
    from podcheck.results import RepairResult, Report

    index = "https://user:PLANTEDindexPass0123@pypi.example/simple"
    extra = "https://__token__:PLANTEDpipToken0123@pypi.example/private"
    signed = "https://b.s3.amazonaws.com/w.whl?X-Amz-Signature=PLANTEDsignature0123abcd"
    pod.configure(torch={"index_url": index}, fix={"pip_args": ["--extra-index-url", extra, "--find-links", signed]})
    live = pod.live()
    inputs = {"spec": "torch", "index_url": live.config.torch.index_url, "pip_args": live.config.fix.pip_args}
    Markers(live).record("torch", inputs, changed=True)
    command = f"python -m pip install torch --index-url {index} --extra-index-url {extra} --find-links {signed}"
    report = Report(host="local", profile="runtime", repairs=[RepairResult("torch", "changed", "installed", [command])])
    fixer._remember(live, report, fixer.Options())
    for name in ("markers.json", "last-fix.json"):
        text = (pod.state_dir / name).read_text()
        assert "PLANTED" not in text, f"{name}: {text}"
        assert "X-Amz-Signature=[REDACTED]" in text and "pypi.example/simple" in text, text
    assert "https://user:[REDACTED]@pypi.example/simple" in (pod.state_dir / "last-fix.json").read_text()
    marker = json.loads((pod.state_dir / "markers.json").read_text())["torch"]
    assert marker["fingerprint"], "the marker still tells changed inputs from unchanged ones"
