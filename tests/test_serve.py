"""podcheck serve: /healthz from a shared cached run, /api/status, the status page, no secrets."""
from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import podsim
import pytest

from podcheck import config as config_mod
from podcheck.services import serve


def get(url: str, method: str = "GET") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=60) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


@pytest.fixture
def served():
    """Start `podcheck serve --port 0` for a SimPod; yields its base URL; stops it afterwards."""
    podchecks = podsim.Background()

    def start(sim: podsim.SimPod, *args: str, env: dict | None = None) -> str:
        proc = podchecks(sim, "serve", "--port", "0", *args, env=env)
        line = proc.stdout.readline()
        assert line.startswith("podcheck serve: http://"), line + proc.stderr.read()
        return line.split()[2].rstrip("/")
    yield start
    podchecks.close()


@pytest.fixture
def sim(tmp_path, torch_python):
    pod = podsim.cpu_pod(tmp_path, torch_python)
    pod.configure(pod={"state_dir": str(tmp_path / "state")}, serve={"cache_seconds": 0.5})
    return pod


def test_healthz_flips_to_200_when_the_fault_is_repaired(sim, served):
    shutil.rmtree(sim.workspace)
    base = served(sim, "--select", "pod")
    code, text = get(base + "/healthz")
    assert code == 503 and text.startswith("failing: pod.workspace")
    assert get(base + "/healthz", "HEAD")[0] == 503
    status = json.loads(get(base + "/api/status")[1])
    assert status["healthy"] is False and status["report"]["results"][0]["status"] == "failed"
    sim.workspace.mkdir()  # the repair
    time.sleep(0.6)        # the cached run expires
    code, text = get(base + "/healthz")
    assert (code, text) == (200, "ok: 1 passed\n")
    assert get(base + "/healthz", "POST")[0] == 405  # read-only: nothing is triggered over HTTP
    assert get(base + "/nope")[0] == 404


def test_concurrent_requests_during_a_miss_share_one_run(sim, served, tmp_path, torch_python):
    runs = tmp_path / "probe-runs"
    counting = podsim.fake_python(tmp_path / "counting" / "python", f'echo run >> {runs}\nexec {torch_python} "$@"')
    # probe_reuse_seconds = 0: every check run probes, so probe runs count check runs
    sim.configure(pod={"python": str(counting), "probe_reuse_seconds": 0.0}, serve={"cache_seconds": 1.0})
    base = served(sim, "--select", "gpu.torch_build")  # needs the probe: one probe = one check run
    assert get(base + "/healthz")[0] == 200
    before = runs.read_text().count("run")
    runs_before = json.loads(get(base + "/api/status")[1])["runs"]
    time.sleep(1.1)
    barrier = threading.Barrier(20)

    def hit(_):
        barrier.wait()
        return get(base + "/healthz")

    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(hit, range(20)))
    assert answers == [(200, "ok: 1 passed\n")] * 20
    assert runs.read_text().count("run") == before + 1
    assert json.loads(get(base + "/api/status")[1])["runs"] == runs_before + 1


SECRETS = {
    "HF_TOKEN": "hf_PlantedTokenValue0123456789abcd",
    "RUNPOD_API_KEY": "rpa_PLANTEDKEY0123456789ABCDEFG",
}
RCLONE_CONF = """[gdrive]
type = drive
client_id = 123.apps.googleusercontent.com
client_secret = GOCSPX-PlantedClientSecret99
token = {"access_token":"ya29.PlantedAccessToken0000","refresh_token":"1//PlantedRefreshToken0000000000","expiry":"2030-01-01T00:00:00Z"}
team_drive = 0ABCdefGHIjklMNOpqr
"""
PLANTED = [*SECRETS.values(), "GOCSPX-PlantedClientSecret99", "ya29.PlantedAccessToken0000",
           "1//PlantedRefreshToken0000000000", "s3cr3tPassw0rd", "BearerPlantedValue123456"]


def test_no_planted_secret_in_any_answer(sim, served, tmp_path):
    conf = tmp_path / "rclone.conf"
    conf.write_text(RCLONE_CONF)
    # The secret reaches a check message (the workspace path) and the watch log shown on the page.
    secret_ws = tmp_path / f"ws-{SECRETS['HF_TOKEN']}"
    sim.configure(pod={"workspace": str(secret_ws)}, sync={"rclone_config": str(conf)})
    log = tmp_path / "state" / "watch.log"
    log.parent.mkdir(parents=True)
    log.write_text(json.dumps({"time": "2026-01-01T00:00:00+00:00", "event": "repair", "check": ["sync.running"],
                               "repair": "sync.start", "outcome": "failed",
                               "message": "rclone: Authorization: Bearer BearerPlantedValue123456 "
                                          "via https://me:s3cr3tPassw0rd@drive.example/x "
                                          f"client_secret = GOCSPX-PlantedClientSecret99 {SECRETS['RUNPOD_API_KEY']}"})
                   + "\n")
    base = served(sim, "--select", "pod", env=SECRETS)
    answers = {path: get(base + path) for path in ("/healthz", "/api/status", "/")}
    assert answers["/healthz"][0] == 503 and "pod.workspace" in answers["/healthz"][1]
    assert "no workspace at" in answers["/"][1] and "sync.start" in answers["/"][1]
    for path, (_, body) in answers.items():
        for secret in PLANTED:
            assert secret not in body, f"{secret} leaked in {path}"
    assert "[REDACTED]" in answers["/api/status"][1]


def test_status_page_renders_in_headless_chromium(sim, served, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        pytest.skip("chromium is not installed")
    shutil.rmtree(sim.workspace)
    base = served(sim, "--select", "pod", "--select", "system")
    done = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'chromium'}", "--dump-dom", base + "/"],
                          capture_output=True, text=True, timeout=90)
    dom = done.stdout
    assert '<table id="checks">' in dom, done.stderr[-2000:]
    assert "pod.workspace" in dom and "system.ffmpeg" in dom and "no workspace at" in dom
    assert 'id="summary" class="sum bad">Failing: 1 failed, 1 passed' in dom
    assert 'href="http://127.0.0.1:8188/"' in dom
    assert "<script" not in dom and "http-equiv=\"refresh\"" in dom


def test_background_repairs_and_markers_are_shown(sim, served):
    import testinfra

    from podcheck.fix import markers
    from podcheck.fix import progress as fix_progress
    from podcheck.host.pod import Pod

    pod = Pod(config_mod.load(sim.config_path, env={}), testinfra.get_host("local://"))
    markers.Markers(pod).record("ffmpeg", {"install": ["apt-get", "install", "ffmpeg"]}, changed=True)
    progress = fix_progress.Progress(pod, fix_progress.BACKGROUND, token="t0", queue=["sage"])  # this process runs it
    progress.step("torch", "changed", "installed torch 2.13.0+cpu")
    progress.step("sage", "running", "pip install sageattention")
    progress.log("Collecting sageattention==1.0.6")
    base = served(sim, "--select", "pod")
    status = json.loads(get(base + "/api/status")[1])
    background = status["fix"]["background"]
    assert background["state"] == "running" and background["current"] == "sage"
    assert "Collecting sageattention==1.0.6" in background["log_tail"]
    assert "ffmpeg" in status["fix"]["markers"]
    html = get(base + "/")[1]
    assert "background repairs" in html and "now: sage" in html and "Collecting sageattention==1.0.6" in html
    assert "torch: changed installed torch 2.13.0+cpu" in html
    assert '<p id="markers">ffmpeg (changed ' in html
    progress.finish()
    assert "background repairs" not in get(base + "/")[1]


def test_port_taken_is_one_line_and_exit_2(sim):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = sim.podcheck("serve", "--port", str(port))
    assert run.rc == 2
    assert run.stderr == (f"podcheck: error: port {port} on 127.0.0.1 is taken: another program listens there; "
                          "pick another with --port\n")


# --- pieces ---------------------------------------------------------------------------------------

def test_cache_reuses_a_run_for_its_ttl():
    now = [0.0]
    calls = []
    cache = serve.Cache(lambda: calls.append(1) or serve.Snapshot(None, f"run {len(calls)}", 0.0), 5.0, lambda: now[0])
    assert cache.get().error == "run 1" and cache.get().error == "run 1"
    now[0] = 5.0
    assert cache.get().error == "run 2" and cache.runs == 2


def test_comfyui_link_follows_the_way_the_page_was_reached():
    cfg = config_mod.load(env={})
    assert serve.comfyui_link("abc123-8765.proxy.runpod.net", cfg, 8765) == "https://abc123-8188.proxy.runpod.net/"
    assert serve.comfyui_link("10.0.0.5:8765", cfg, 8765) == "http://10.0.0.5:8188/"
    assert serve.comfyui_link("[::1]:8765", cfg, 8765) == "http://[::1]:8188/"
    assert serve.comfyui_link('"><script>x', cfg, 8765) == "http://127.0.0.1:8188/"
    assert serve.comfyui_link(None, cfg, 8765) == "http://127.0.0.1:8188/"


def test_the_command_a_repair_runs_now_is_on_the_page(sim, served):
    """The same `running` record `podcheck status` prints (written by --fix's heartbeat)."""
    import testinfra

    from podcheck.fix import fixer
    from podcheck.host.pod import Pod

    pod = Pod(config_mod.load(sim.config_path, env={}), testinfra.get_host("local://"))
    progress = fixer.Progress(pod, fixer.FOREGROUND, token="t1", queue=[])  # this process runs it
    progress.step("torch", "running", "pip install torch")
    progress.watcher(lambda line: None)({"command": "pip install torch==2.13.0", "elapsed_s": 312.5,
                                         "last_line": "Downloading torch-2.13.0.whl (800 MB)"})
    base = served(sim, "--select", "pod")
    page = get(base + "/")[1]
    assert "running: <code>$ pip install torch==2.13.0</code> (5 min 12 s): Downloading torch-2.13.0.whl (800 MB)" in page
    assert json.loads(get(base + "/api/status")[1])["fix"]["foreground"]["running"]["elapsed_s"] == 312.5
    progress.finish()
    assert "running: <code>" not in get(base + "/")[1]
