"""A fleet of simulated pods behind real sshd instances (tests/fleetsim.py), checked in one
`podcheck --hosts @inventory --parallel 4` run while one pod's sshd is killed mid-run and one
pod's probe hangs; per-pod verdicts must equal each pod's own single-host run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import fleetsim
import podsim
import psutil
import pytest

from podcheck.domain import users

pytestmark = [pytest.mark.ssh, pytest.mark.xdist_group("fleet")]

SELECT = "pod,system,disk,memory,isolation,attention.sage_import,gpu"
PROBE_TIMEOUT = 4.0
CONNECT_TIMEOUT = 3.0
SLOW_PROBE = 300  # pod-8's probe: were its death not noticed, the run would wait this long
NAMES = [f"pod-{i}" for i in range(1, 10)]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory, torch_python):
    """9 pods: 1-2 real torch (2 with sage required), 3 no torch, 4 no workspace, 5 disk too small,
    6 RAM too small, 7 probe hangs, 8 sshd killed mid-run (its probe is slow), 9 sshd frozen."""
    try:
        sim = fleetsim.start(NAMES)
    except RuntimeError as exc:
        pytest.skip(str(exc))
    root = tmp_path_factory.mktemp("fleet")
    bare = podsim.bare_venv(root / "bare")
    hang = podsim.fake_python(root / "hang" / "python", "exec sleep 600")
    slow = podsim.fake_python(root / "slow" / "python", f'sleep {SLOW_PROBE}; exec {bare} "$@"')
    pythons = {"pod-1": torch_python, "pod-2": torch_python, "pod-7": hang, "pod-8": slow}
    settings = {"pod": {"gpu": "absent", "user": "alice", "probe_timeout": 60.0, "command_timeout": 30.0},
                "torch": {"cuda": "cpu"}, "attention": {"sage": "off"}}
    text = podsim.toml_dumps(settings)
    for name in NAMES:
        ws = root / name / "workspace"
        if name != "pod-4":
            for folder in users.KINDS:
                (ws / folder / "alice").mkdir(parents=True)
        own = {"workspace": str(ws), "python": str(pythons.get(name, bare))}
        if name == "pod-7":
            own["probe_timeout"] = PROBE_TIMEOUT
        if name == "pod-8":
            own["probe_timeout"] = 2.0 * SLOW_PROBE
        text += podsim.toml_dumps({f'hosts."{name}".pod': own})
    text += podsim.toml_dumps({'hosts."pod-2".attention': {"sage": "required"},
                               'hosts."pod-5".disk': {"min_free_gib": 1e9},
                               'hosts."pod-[6]".memory': {"min_ram_available_gib": 1e9}})
    (root / "podcheck.toml").write_text(text)
    fleetsim.stop_signal(sim.pods["pod-9"])
    yield sim, root
    os.kill(sim.pods["pod-9"].proc.pid, signal.SIGCONT)
    sim.stop()


def _env(root):
    env = {**os.environ, "PODCHECK_CONFIG": str(root / "podcheck.toml")}
    env.pop("PODCHECK_WORKSPACE", None)
    return env


def _podcheck(root, *args, timeout=240):
    done = subprocess.run([sys.executable, "-m", "podcheck", *args], capture_output=True, text=True,
                          env=_env(root), cwd=root, timeout=timeout)
    return podsim.Run(done.returncode, done.stdout, done.stderr)


def verdicts(report):
    return sorted((r["id"], r["status"], r["blocked_by"]) for r in report["results"])


def by_pod(doc):
    return {r["host"].removeprefix("ssh://"): r for r in doc["reports"]}


@pytest.fixture(scope="module")
def fleet_run(fleet):
    """The fleet run, pod-8's sshd killed while its (slow) probe runs."""
    sim, root = fleet
    inventory = sim.inventory()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "podcheck", "--hosts", f"@{inventory}", "--ssh-config",
                             str(sim.ssh_config), "--parallel", "4", "--select", SELECT, "--json", "-",
                             "--connect-timeout", str(CONNECT_TIMEOUT), "--junit-xml", str(root / "junit.xml"),
                             "--prometheus", str(root / "metrics.prom")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(root), cwd=root)
    pod8 = psutil.Process(sim.pods["pod-8"].proc.pid)

    def probing():
        assert proc.poll() is None, proc.communicate()
        return any("sleep" in (c.name() or "") for c in pod8.children(recursive=True))

    try:
        podsim.wait_for(probing, timeout=120, what="pod-8's probe to start")
        killed_at = time.monotonic() - started
        sim.pods["pod-8"].kill()
        out, err = proc.communicate(timeout=240)
    finally:
        podsim.stop(proc)
    return podsim.Run(proc.returncode, out, err), time.monotonic() - started, killed_at


def test_fleet_reports_every_pod(fleet_run):
    run, wall, _ = fleet_run
    assert run.rc == 5, run.stderr  # some reached pod failed (1) | some pod unreachable (4)
    pods = by_pod(run.json)
    assert sorted(pods) == sorted(NAMES)
    fleet = run.json["fleet"]
    assert fleet["summary"] == {"pods": 9, "passed": 1, "failed": 6, "unreachable": 2}
    assert pods["pod-1"]["summary"]["failed"] == 0 and pods["pod-1"]["summary"]["passed"] >= 5
    status = {p: {r["id"]: r["status"] for r in rep["results"]} for p, rep in pods.items()}
    assert status["pod-2"]["attention.sage_import"] == "failed"
    assert status["pod-3"]["gpu.torch_build"] == "failed"
    assert status["pod-4"]["pod.workspace"] == "failed"
    assert status["pod-5"]["disk.workspace"] == "failed"
    assert status["pod-6"]["memory.ram"] == "failed"
    causes = {c["id"]: c["pods"] for c in fleet["causes"]}
    assert causes["unreachable"] == 2 and causes["gpu.torch_build"] >= 4


def test_hung_probe_and_dead_pods_within_their_timeouts(fleet_run):
    run, wall, killed_at = fleet_run
    pods = by_pod(run.json)
    hung = next(r for r in pods["pod-7"]["results"] if r["id"] == "gpu.torch_build")
    assert hung["status"] == "failed" and f"probe timed out after {PROBE_TIMEOUT:g} s" in hung["message"]
    assert "unreachable" not in pods["pod-7"]
    frozen = pods["pod-9"]
    assert "timed out" in frozen["unreachable"] or "no answer" in frozen["unreachable"], frozen
    assert frozen["duration_s"] < CONNECT_TIMEOUT + 6
    dead = pods["pod-8"]
    assert dead["unreachable"] and "refused" in dead["unreachable"].lower(), dead
    # declared dead soon after the kill, not when its slow probe would have ended; the run did not wait for it
    assert dead["duration_s"] < SLOW_PROBE / 2, dead
    assert wall < killed_at + SLOW_PROBE


def test_verdicts_equal_single_host_runs(fleet, fleet_run):
    sim, root = fleet
    run, _, _ = fleet_run
    pods = by_pod(run.json)
    for name in ("pod-1", "pod-2", "pod-3", "pod-4", "pod-7"):
        alone = _podcheck(root, "--hosts", f"ssh://{name}", "--ssh-config", str(sim.ssh_config),
                          "--select", SELECT, "--json", "-")
        assert alone.rc == (0 if name == "pod-1" else 1), alone.stderr
        assert verdicts(alone.json) == verdicts(pods[name]), (name, alone.json["results"], pods[name]["results"])


def test_dead_pod_in_junit_and_prometheus(fleet, fleet_run):
    _, root = fleet
    junit = (root / "junit.xml").read_text()
    assert '<testcase classname="host" name="host.reachable"' in junit
    assert junit.count("host.reachable") == 2
    prom = (root / "metrics.prom").read_text()
    assert 'podcheck_host_up{host="ssh://pod-8"} 0.0' in prom
    assert 'podcheck_host_up{host="ssh://pod-1"} 1.0' in prom


def test_no_ssh_process_left_behind(fleet, fleet_run):
    assert fleetsim.ssh_processes("pcmux-") == []


def test_ansible_inventory_gives_the_same_verdicts(fleet, fleet_run):
    sim, root = fleet
    run, _, _ = fleet_run
    ansible = _podcheck(root, "--hosts", "ansible://pods", "--ansible-inventory", str(sim.ansible_inventory()),
                        "--parallel", "4", "--select", SELECT, "--json", "-", "--connect-timeout", str(CONNECT_TIMEOUT))
    assert ansible.rc == 5, ansible.stderr
    got, want = by_pod(ansible.json), by_pod(run.json)
    assert sorted(got) == sorted(want)
    for name in NAMES:
        if name == "pod-8":
            assert got[name]["unreachable"]
            continue
        assert verdicts(got[name]) == verdicts(want[name]), name
        assert bool(got[name].get("unreachable")) == bool(want[name].get("unreachable"))
    assert fleetsim.ssh_processes("pcmux-") == []


def test_fleet_view_formats(fleet, fleet_run):
    run, _, _ = fleet_run
    from podcheck.reports import fleet as view
    from podcheck.results import CheckResult, Report

    reports = []
    for doc in run.json["reports"]:
        results = [CheckResult(**{k: v for k, v in r.items()}) for r in doc["results"]]
        reports.append(Report(host=doc["host"], profile="runtime", results=results, unreachable=doc.get("unreachable")))
    table = view.render_table(reports)
    assert "UNREACHABLE" in table and "FAIL pod.workspace" in table
    md = view.render_md(reports)
    assert "| `ssh://pod-9` |" in md and "## Root causes across the fleet" in md
    html = view.render_html(reports)
    assert 'class="unreachable"' in html and "http" not in html.split("<body>", 1)[1]
    assert json.loads(view.render_json(reports))["fleet"]["summary"]["unreachable"] == 2


def _reports(run):
    from podcheck.results import CheckResult, Report
    return [Report(host=d["host"], profile="runtime", results=[CheckResult(**r) for r in d["results"]],
                   unreachable=d.get("unreachable")) for d in run.json["reports"]]


def test_fleet_page_in_chromium_loads_nothing_external(fleet_run, tmp_path):
    from test_reports import chromium, page_requests

    from podcheck.reports import fleet as view

    run, _, _ = fleet_run
    page = tmp_path / "fleet.html"
    page.write_text(view.render_html(_reports(run)))
    dom = chromium(tmp_path, page.as_uri(), "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count("<tr><th><code>ssh://pod-") == 9
    assert "9 pods: 1 passed, 6 failed, 2 unreachable" in dom.stdout
    netlog = tmp_path / "net.json"
    done = chromium(tmp_path, page.as_uri(), f"--screenshot={tmp_path / 'f.png'}", f"--log-net-log={netlog}")
    assert done.returncode == 0 and page_requests(netlog) == []


def test_serve_answers_with_the_fleet_view(fleet_run):
    import threading
    import urllib.error
    import urllib.request

    from podcheck import config as config_mod
    from podcheck.services import fleet_serve
    from podcheck.services.serve import bind

    run, _, _ = fleet_run
    reports = _reports(run)
    service = fleet_serve.FleetService(config_mod.load(None, env={}), lambda: reports, ttl=60)
    server = bind("127.0.0.1", 0, fleet_serve.handler_for(service))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(urllib.error.HTTPError) as unhealthy:
            urllib.request.urlopen(f"{base}/healthz", timeout=10)
        assert unhealthy.value.code == 503
        assert unhealthy.value.read().decode() == "1/9 pods passed, 6 failed, 2 unreachable\n"
        page = urllib.request.urlopen(f"{base}/", timeout=10).read().decode()
        assert 'id="fleet"' in page and 'http-equiv="refresh" content="60"' in page
        status = json.loads(urllib.request.urlopen(f"{base}/api/status", timeout=10).read())
        assert status["schema"] == "podcheck/1" and len(status["reports"]) == 9
    finally:
        server.shutdown()
        server.server_close()
