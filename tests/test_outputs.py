"""Outputs people and tools read: their modes follow the umask (a non-root node_exporter reads the
textfile), the bundle of raw logs stays 0600; missing parent folders are created, with one stderr
line each; the report carries the last --fix and counts every custom node; `status` prints one time
format; a failed ComfyUI clone names the next step."""
from __future__ import annotations

import os
import re
import stat
import subprocess
import sys

import podsim

from podcheck import config
from podcheck.fix.fixer import run_one


def podcheck_umask(pod, umask: str, *args: str) -> podsim.Run:
    """The real CLI under `umask` (set by sh before it execs python)."""
    env = {**os.environ, "PODCHECK_CONFIG": str(pod.config_path), **pod.env}
    env.pop("PODCHECK_WORKSPACE", None)
    done = subprocess.run(["sh", "-c", f'umask {umask} && exec "$0" -m podcheck "$@"', sys.executable, *args],
                          check=False, capture_output=True, text=True, env=env, cwd=pod.root, timeout=300)
    return podsim.Run(done.returncode, done.stdout, done.stderr)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_check_outputs_follow_the_umask_and_missing_folders_are_created_and_said(cpu_pod, tmp_path):
    out = tmp_path / "out"
    paths = {"--json": out / "j" / "r.json", "--junit-xml": out / "x" / "r.xml", "--prometheus": out / "p" / "r.prom"}
    args = [a for flag, path in paths.items() for a in (flag, str(path))]
    run = podcheck_umask(cpu_pod, "022", "--select", "system.ffmpeg", *args)
    assert run.rc == 0, run.stderr
    for path in paths.values():
        assert mode(path) == 0o644, (path, oct(mode(path)))
        assert f"podcheck: created the folder {path.parent} for {path}" in run.stderr.splitlines()
    again = podcheck_umask(cpu_pod, "027", "--select", "system.ffmpeg", *args)
    assert again.rc == 0 and again.stderr == "", "folders that exist are not announced"
    assert all(mode(p) == 0o640 for p in paths.values())


def test_report_follows_the_umask_and_the_bundle_stays_private(cpu_pod, tmp_path):
    report, bundle = tmp_path / "new" / "report.md", tmp_path / "b" / "report.tar.gz"
    run = podcheck_umask(cpu_pod, "022", "report", "-o", str(report), "--bundle", str(bundle))
    assert run.rc == 0, run.stderr
    assert mode(report) == 0o644 and mode(bundle) == 0o600
    assert f"podcheck: created the folder {report.parent} for {report}" in run.stderr
    assert f"podcheck: created the folder {bundle.parent} for {bundle}" in run.stderr


def test_report_has_the_last_fix_and_counts_every_custom_node(cpu_pod):
    nodes = cpu_pod.workspace / "ComfyUI" / "custom_nodes"
    (nodes / "ComfyUI-Manager").mkdir(parents=True)
    (nodes / "websocket_image_save.py").write_text("NODE_CLASS_MAPPINGS = {}\n")  # a one-file node
    (nodes / "example_node.py.example").write_text("")  # not loaded by ComfyUI
    (nodes / "__pycache__").mkdir()
    state = cpu_pod.state_dir
    state.mkdir(parents=True, exist_ok=True)
    (state / "fix.log").write_text("=== podcheck --fix (foreground)\n$ apt-get install -y ffmpeg\n  -> rc 0\n")
    run = cpu_pod.podcheck("report")
    assert run.rc == 0, run.stderr
    assert re.search(r"custom nodes\s*\|\s*2\b", run.stdout), run.stdout[:3000]
    assert "ComfyUI-Manager  -" in run.stdout and "websocket_image_save.py  file" in run.stdout
    assert f"fix log, last 3 lines ({state}/fix.log)" in run.stdout and "apt-get install -y ffmpeg" in run.stdout


def test_status_prints_one_time_format(cpu_pod, tmp_path):
    cpu_pod.configure(fix={"ffmpeg_install": ["true"]})
    fixed = cpu_pod.podcheck("--fix", "--select", "system.ffmpeg")
    assert fixed.rc == 0, fixed.stderr
    status = cpu_pod.podcheck("status")
    assert status.rc == 0 and "last --fix:" in status.stdout
    stamps = re.findall(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[+-]\d\d:\d\d)?", status.stdout)
    assert stamps and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", s) for s in stamps), stamps


def test_a_failed_clone_names_the_next_step(tmp_path):
    ws = tmp_path / "workspace"
    ws.mkdir()
    conf = tmp_path / "podcheck.toml"
    conf.write_text(podsim.toml_dumps({"pod": {"workspace": str(ws), "python": sys.executable},
                                       "comfyui": {"repo": str(tmp_path / "no-repo")}}))
    result = run_one(config.load(conf, env={}), "comfyui")  # the real git clone, of a path that is not there
    assert result.status == "failed"
    assert f"git clone {tmp_path / 'no-repo'} failed" in result.message
    assert "point [comfyui] repo at a mirror or a local repository" in result.message, result.message
