"""`--dry-run` is check mode on apply()'s own code path: on one simulated pod, each install repair is
first rehearsed (run_one(dry_run=True): the recorded runner records, changes nothing) and then run, and
the commands the rehearsal listed are the ones the run ran. The repairs with a fault of their own to
set up (isolation, caches, sync.config, memory.free, comfyui.relaunch, training.resume) are compared
the same way in test_fix_safety.py and test_resume.py."""
from __future__ import annotations

import fixsim

from podcheck import config
from podcheck.fix.fixer import run_one


def files(pod) -> dict:
    """The pod's files outside state_dir (where the services started here keep writing their logs)."""
    return {k: v for k, v in fixsim.tree(pod.root).items() if ".podcheck" not in k}


def rehearse_then_run(pod, repair_id: str) -> tuple[list[str], list[str], str]:
    """(planned commands, commands run, the run's status); asserts the rehearsal changed no file."""
    cfg = config.load(pod.config_path, env={})
    before = files(pod)
    planned = run_one(cfg, repair_id, dry_run=True)
    assert planned.status == "skipped" and planned.message.startswith("dry run: would run"), planned
    assert files(pod) == before, f"the dry run of {repair_id} changed files"
    result = run_one(cfg, repair_id)
    return fixsim.unknowable(planned.commands), fixsim.unknowable(result.commands), result.status


def test_each_install_repair_runs_what_its_dry_run_planned(tmp_path):
    pod = fixsim.layered_pod(tmp_path, sage="required")  # torch is there: what comes after it is due
    python = pod.settings["pod"].get("python")
    try:
        # a venv that is not there yet (the layered one works, so `venv` would have nothing to do)
        pod.configure(pod={"python": str(tmp_path / "venv2" / "bin" / "python")})
        planned, ran, status = rehearse_then_run(pod, "venv")
        assert status == "changed" and ran and planned == ran, (planned, ran)
        pod.configure(pod={"python": python} if python else {})
        if not python:
            del pod.settings["pod"]["python"]
            pod.configure()
        for rid in ("ffmpeg", "sage", "comfyui", "isolation.user_dirs", "comfyui.launch", "sync.start"):
            planned, ran, status = rehearse_then_run(pod, rid)
            assert status == ("unchanged" if rid == "ffmpeg" else "changed"), (rid, status)
            assert ran and planned == ran, (rid, planned, ran)
    finally:
        fixsim.stop_pod(tmp_path)


def test_a_gated_off_repair_plans_nothing(tmp_path):
    """sage off: the dry run plans no pip for sage (it used to), and says why."""
    pod = fixsim.layered_pod(tmp_path, sage="off")
    cfg = config.load(pod.config_path, env={})
    planned = run_one(cfg, "sage", dry_run=True)
    assert planned.commands == [] and planned.message == 'dry run: nothing to do: sage is off ([attention] sage = "off")'
    assert run_one(cfg, "sage").status == "skipped"


def test_sync_config_plans_no_copy_of_a_missing_rclone_conf(tmp_path):
    """The dry run used to plan `cp -p rclone.conf ...` for a file that is not there."""
    pod = fixsim.bare_pod(tmp_path, comfyui=False)
    pod.configure(sync={"rclone_config": str(tmp_path / "missing.conf")})
    planned = run_one(config.load(pod.config_path, env={}), "sync.config", dry_run=True)
    assert planned.commands == [] and planned.message.startswith("dry run: would fail: "), planned
    assert "create it with `rclone config`" in planned.message
