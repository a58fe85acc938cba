"""Long-running modes reuse the probe between runs; NVML and failures are never reused."""
import time

import podsim

from podcheck import config, runner
from podcheck.facts import Facts, ProbeCache


def test_probe_runs_once_per_ttl_in_one_process(cpu_pod, tmp_path):
    """Two runs with one cache: the second takes the probe's facts without running the pod python."""
    counter = tmp_path / "probe-runs"
    wrapper = podsim.fake_python(tmp_path / "py" / "python",
                                 f'echo run >> "{counter}"\nexec "{podsim.torch_venv()}" "$@"')
    cpu_pod.configure(pod={"python": str(wrapper)})
    cfg = config.load(cpu_pod.config_path, env={})
    cache = ProbeCache(ttl=600)
    for _ in range(2):
        report = runner.run(cfg, select=["gpu.torch_build"], probe_cache=cache)
        assert [(r.id, r.status) for r in report.results] == [("gpu.torch_build", "passed")]
    assert counter.read_text().count("run") == 1
    runner.run(cfg, select=["gpu.torch_build"])  # no cache: the probe runs
    assert counter.read_text().count("run") == 2


def test_cache_expires_and_keeps_no_failure():
    cache = ProbeCache(ttl=0.05)
    cache.put("local", Facts(probe_error="probe timed out after 60 s"))
    assert cache.get("local") is None, "a failed probe is tried again next run"
    cache.put("local", Facts(torch={"version": "2.13.0+cpu"}, nvml={"gpus": [{"index": 0}]}))
    got = cache.get("local")
    assert got.torch == {"version": "2.13.0+cpu"} and got.nvml == {}, "NVML is never reused"
    time.sleep(0.06)
    assert cache.get("local") is None
