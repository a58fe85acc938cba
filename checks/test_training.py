"""training: LoRA trainings make progress and can be resumed."""
import pytest

from podcheck.domain import trainings
from podcheck.domain.samples import Samples, below_for
from podcheck.host import procs


def _gpu_facts(pod):
    """NVML GPUs when this pod has (and may have) any, else []."""
    if pod.config.pod.gpu == "absent":
        return []
    nvml = pod.facts.nvml
    return nvml.get("gpus") or [] if nvml.get("available") else []


@pytest.mark.podcheck(id="training.progress", repair="training.resume", profiles=("runtime",), needs=("pod.workspace",))
def test_progress(pod, say):
    """Every running LoRA training makes progress (GPU busy, or new files in its output folder).

    Trainings: kohya flux_train_network.py, train_network.py, sdxl_train*.py, or under accelerate launch.
    Stuck: GPU utilisation below gpu_util_threshold for stuck_seconds (NVML samples), or, without GPU
    samples, no new log or checkpoint in its output folder for stuck_seconds."""
    cfg = pod.config.training
    found = trainings.find(pod, [pod.config.pod.workspace, *cfg.roots])
    if not found:
        pytest.skip("no training runs")
    now = procs.now(pod)
    gpus = _gpu_facts(pod)
    samples = Samples(pod, keep_seconds=max(3600.0, 4 * cfg.stuck_seconds))
    if gpus:
        try:
            samples.record_gpus({"gpus": gpus}, now)
        except OSError:  # a read-only state_dir: judge on the history there is
            pass
    max_gap = max(30.0, cfg.stuck_seconds / 2)
    stuck, fine, warnings = [], [], []
    for t in found:
        what = f"training {t.label} ({t.script}, pid {', '.join(map(str, t.pids[:4]))})"
        verdict = None
        indices = trainings.gpus_of(pod, t, gpus)
        if indices:
            # idle time before this run started belongs to another run (a relaunch is not stuck at once)
            idle = {i: min(below_for(samples.series(f"gpu.{i}.util"), cfg.gpu_util_threshold, now, max_gap),
                           t.elapsed) for i in indices}
            if all(v >= cfg.stuck_seconds for v in idle.values()):
                verdict = (f"GPU {', '.join(map(str, indices))} utilisation has stayed below "
                           f"{cfg.gpu_util_threshold:g} % for {min(idle.values()):.0f} s")
            elif any(v == 0.0 for v in idle.values()) and samples.series(f"gpu.{indices[0]}.util"):
                fine.append(f"{t.label}: GPU {', '.join(map(str, indices))} busy")
                verdict = False
        if verdict is None:
            act = trainings.activity(pod, t)
            last = max(act.newest or 0.0, now - t.elapsed)
            quiet = max(0.0, now - last)  # a write after `now` was taken is "just now"
            state = f"; latest state {act.latest_state}" if act.latest_state else ""
            if quiet >= cfg.stuck_seconds:
                verdict = (f"nothing new in its output folder for {quiet:.0f} s (stuck_seconds = {cfg.stuck_seconds})"
                           f"; last write {act.newest_path or 'none'}{state}")
            else:
                fine.append(f"{t.label}: last write {quiet:.0f} s ago{state}")
        if verdict:
            stuck.append(f"{what} looks stuck: {verdict}")
        script, has = trainings.script_has_save_state(pod, t)
        if not t.save_state:
            where = f"; add it to {script}" if script and not has else ""
            warnings.append(f"{t.label} runs without --save_state, so it cannot be resumed, only restarted{where}")
    warning = (" Warning: " + "; ".join(warnings) + ".") if warnings else ""
    assert not stuck, "; ".join(stuck) + "." + warning
    say("; ".join(fine) + "." + warning)
