"""Fixtures for podcheck's own tests: simulated pods from real parts (see podsim.py)."""
from __future__ import annotations

import os

import podsim
import pytest
import sshd
from sim_comfyui import launcher, sage_py  # noqa: F401  (fixtures for every test module)


@pytest.fixture(scope="session")
def torch_python():
    """The pod interpreter of a healthy CPU pod: a venv with torch 2.13.0 (CPU), built once."""
    return podsim.torch_venv()


@pytest.fixture
def cpu_pod(tmp_path, torch_python):
    """A healthy CPU-only simulated pod (gpu absent, torch cuda "cpu", sage off)."""
    return podsim.cpu_pod(tmp_path, torch_python)


@pytest.fixture
def spawn():
    """Start real processes (`spawn([...])`, own session); their process groups are killed at teardown."""
    spawner = podsim.Spawner()
    yield spawner
    spawner.close()


@pytest.fixture(scope="session")
def sshd_server():
    """A real sshd on 127.0.0.1 accepting root with a key (skips where that cannot run)."""
    if os.geteuid() != 0:
        pytest.skip("sshd for root logins needs root")
    try:
        server = sshd.start()
    except RuntimeError as exc:
        pytest.skip(str(exc))
    yield server
    server.stop()
