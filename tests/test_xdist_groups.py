"""The suite relies on `--dist loadgroup`: tests marked with one xdist_group run on one worker, one
after another (one sshd fleet, one podman user, one real ComfyUI at a time). pytest 9.2 with
pytest-xdist 3.8 silently stops grouping (pytest-xdist#1386); this shows the installed pair groups."""
from __future__ import annotations

import re
import subprocess
import sys

GROUPED = """
import os, pytest
pytestmark = pytest.mark.xdist_group("one")
@pytest.mark.parametrize("i", range(6))
def test_grouped(i):
    print(os.environ["PYTEST_XDIST_WORKER"])
"""
LOOSE = """
import pytest
@pytest.mark.parametrize("i", range(6))
def test_loose(i):
    pass
"""


def test_one_group_runs_on_one_worker(tmp_path):
    (tmp_path / "test_grouped.py").write_text(GROUPED)
    (tmp_path / "test_loose.py").write_text(LOOSE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    done = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadgroup", "-v",
                           "-p", "no:cacheprovider", str(tmp_path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    workers = re.findall(r"\[(gw\d)\] .*PASSED .*test_grouped", done.stdout)
    assert len(workers) == 6, done.stdout
    assert len(set(workers)) == 1, f"xdist_group split across workers {sorted(set(workers))}:\n{done.stdout}"
