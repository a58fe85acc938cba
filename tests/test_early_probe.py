"""A plain local `podcheck` starts the facts probe before its heavy imports (podcheck.cli.boot) and the
check run adopts it (podcheck.host.early): the probe runs once, its deadline still holds, and an
early probe nobody adopted does not outlive the run. The pod python is a wrapper around the real
torch venv that logs each probe it runs and which process started it."""
from __future__ import annotations

import os
from pathlib import Path

import podsim
import psutil
import pytest

from podcheck.cli import boot

WRAPPER = """#!/bin/sh
case "$2" in *@@podcheck@@*)
  parent=$(ps -o comm= -p "$(ps -o ppid= -p $PPID | tr -d ' ')")
  echo "probe $$ started by $parent" >> {log} ;;
esac
{body}
"""


def wrapped(tmp_path: Path, body: str) -> tuple[Path, Path]:
    log = tmp_path / "probes.log"
    python = tmp_path / "podpython" / "python"
    python.parent.mkdir()
    python.write_text(WRAPPER.format(log=log, body=body))
    python.chmod(0o755)
    return python, log


def probes(log: Path) -> list[list[str]]:
    return [line.split() for line in log.read_text().splitlines()] if log.exists() else []


def test_the_probe_runs_once_and_starts_before_the_heavy_imports(cpu_pod, tmp_path, torch_python):
    python, log = wrapped(tmp_path, f'exec {torch_python} "$@"')
    cpu_pod.configure(pod={"python": str(python)})
    run = cpu_pod.podcheck("--json", "-")
    assert run.status("gpu.torch_build") == "passed" and run.status("gpu.torch_set") == "passed", run.stdout[-3000:]
    # one probe, started by podcheck's own python (`timeout`'s parent), not through testinfra's `sh -c`
    [started] = probes(log)
    assert started[-1].startswith("python"), started


def test_a_selection_starts_nothing_early(cpu_pod, tmp_path, torch_python):
    python, log = wrapped(tmp_path, f'exec {torch_python} "$@"')
    cpu_pod.configure(pod={"python": str(python)})
    run = cpu_pod.podcheck("--select", "gpu.torch_build", "--json", "-")
    assert run.rc == 0 and run.status("gpu.torch_build") == "passed"
    [started] = probes(log)
    assert started[-1] == "sh", started  # the plain path, through the host backend


def test_an_early_probe_that_hangs_keeps_its_deadline(cpu_pod, tmp_path):
    python, log = wrapped(tmp_path, "exec sleep 600")
    cpu_pod.configure(pod={"python": str(python), "probe_timeout": 3.0})
    run = cpu_pod.podcheck("--json", "-", timeout=120)
    assert run.rc == 1
    assert "probe timed out after 3 s" in run.result("gpu.torch_build")["message"]
    [started] = probes(log)
    assert not psutil.pid_exists(int(started[1])) or psutil.Process(int(started[1])).status() == psutil.STATUS_ZOMBIE


def test_an_early_probe_nobody_adopts_dies_with_the_run(cpu_pod, tmp_path):
    """A bad --format is a usage error (exit 2) after the probe started: the probe must not stay behind."""
    python, log = wrapped(tmp_path, "exec sleep 600")
    cpu_pod.configure(pod={"python": str(python)})
    run = cpu_pod.podcheck("--format", "nonsense")
    assert run.rc == 2 and run.stderr.startswith("podcheck: error:"), run.stderr
    podsim.wait_for(lambda: log.exists(), timeout=10, what="the early probe to have started")
    [started] = probes(log)
    pid = int(started[1])
    podsim.wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                    timeout=10, what="the unadopted early probe to stop")


@pytest.mark.parametrize("argv, path", [
    ([], None),
    (["--fix", "-q", "--json", "-", "--config", "x.toml"], "x.toml"),
    (["--config=x.toml", "--format=json", "--junit-xml", "j.xml"], "x.toml"),
    (["--select", "gpu"], ""),       # a selection may not need the probe
    (["--hosts", "ssh://pod"], ""),  # not the local pod
    (["report"], ""),                # a subcommand
    (["--config"], ""),              # a value missing: the CLI says so
])
def test_which_command_lines_start_the_probe_early(argv, path):
    assert boot.config_path(argv) == path


def test_the_switch_turns_it_off(cpu_pod, tmp_path, torch_python):
    python, log = wrapped(tmp_path, f'exec {torch_python} "$@"')
    cpu_pod.configure(pod={"python": str(python)})
    run = cpu_pod.podcheck("--json", "-", env={**os.environ, "PODCHECK_NO_EARLY_PROBE": "1"})
    assert run.status("gpu.torch_build") == "passed"
    [started] = probes(log)
    assert started[-1] == "sh", started
