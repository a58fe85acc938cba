"""Long work shows its progress: while --fix runs a slow install, it prints the command once it starts,
a heartbeat with the elapsed time and the last line of the command's output, and keeps the same in
the fix-progress document that `podcheck status` reads. The slow install is a real shell loop that
prints lines and then installs the real ffmpeg (a pip install of minutes is what it stands for)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import podsim


def test_a_slow_install_streams_its_command_heartbeat_and_last_line(cpu_pod, tmp_path):
    prefix = tmp_path / "prefix"
    farm = podsim.path_without("ffmpeg", root=tmp_path)
    script = ('for i in 1 2 3 4 5 6; do echo "Downloading part $i of 6"; sleep 0.5; done; '
              f'install -D -m 755 {shutil.which("ffmpeg")} {prefix}/bin/ffmpeg')
    cpu_pod.configure(fix={"ffmpeg_install": ["sh", "-c", script]})
    env = {**os.environ, "PODCHECK_CONFIG": str(cpu_pod.config_path), "PODCHECK_HEARTBEAT_SECONDS": "0.6",
           "PATH": f"{prefix}/bin:{farm}"}
    env.pop("PODCHECK_WORKSPACE", None)
    fixer = subprocess.Popen([sys.executable, "-m", "podcheck", "--fix", "--select", "system.ffmpeg"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cpu_pod.root)
    progress = cpu_pod.state_dir / "fix-progress.json"
    seen = []
    try:
        def running():
            try:
                doc = json.loads(progress.read_text())
            except (OSError, ValueError):
                return None
            now = doc.get("running") or {}
            if now.get("last_line", "").startswith("Downloading part"):
                seen.append(now)
                return now
            return None

        now = podsim.wait_for(running, timeout=60, what="the running command in the fix-progress document")
        assert now["command"].startswith("sh -c 'for i in 1 2 3 4 5 6") and now["elapsed_s"] > 0
        status = cpu_pod.podcheck("status", env={"PATH": env["PATH"]})
        assert "  running: $ sh -c 'for i in" in status.stdout and "last line: Downloading part" in status.stdout, \
            status.stdout
        _, err = fixer.communicate(timeout=120)
    finally:
        if fixer.poll() is None:
            fixer.kill()
            fixer.wait()
    assert fixer.returncode == 0, err
    lines = err.splitlines()
    started = next(i for i, ln in enumerate(lines) if ln.startswith("podcheck --fix:   $ sh -c 'for i in"))
    beats = [ln for ln in lines[started:] if "still running after" in ln]
    assert beats and any("Downloading part" in ln for ln in beats), err
    assert json.loads(progress.read_text()).get("running") is None, "the document forgets a finished command"
