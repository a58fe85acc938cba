"""`podcheck report` and the check outputs on a simulated pod with planted secrets: no secret in any
format or in the bundle; the HTML renders in real headless Chromium and loads nothing external;
the Markdown parses into the expected sections; Prometheus and JUnit parse; a hanging probe is bounded."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import podsim
import psutil
import pytest

UUID = "GPU-12345678-aaaa-bbbb-cccc-0123456789ab"
PEM_BODY = "MIIEvPLANTEDprivatekeybody0123456789abcdefABCDEFghij"
SECRETS = {
    "rclone access token": "ya29.PLANTEDaccess0123456789",
    "rclone refresh token": "1//PLANTEDrefresh0123456789abcdef",
    "rclone client_secret": "GOCSPX-PLANTEDclientsecret01",
    "rclone crypt password": "PLANTEDobscuredcryptpass0123",
    "service-account private key": PEM_BODY,
    "service-account key id": "PLANTEDkeyid0123456789abcdef01234567",
    "HF_TOKEN": "hf_PLANTEDhuggingface0123456789abcd",
    "RUNPOD_API_KEY": "PLANTEDrunpodapikey0123456789",
    "AWS_ACCESS_KEY_ID": "AKIAPLANTEDAWS012345",
    "AWS_SECRET_ACCESS_KEY": "PLANTEDawsSecret/0123456789+abcdefghijkl",
    "CIVITAI_API_KEY": "PLANTEDcivitai0123456789",
    "URL password": "PLANTEDurlpass0123",
    "bearer token": "PLANTEDbearer0123456789abcdef",
    # issue 11: shapes whose names say nothing, and a secret cut before it was redacted
    "azure SAS signature in rclone.conf": "PLANTEDsasConfSig0123456789abc",
    "azure SAS signature in rclone's argv": "PLANTEDsasArgvSig0123456789",
    "Slack webhook in an env var": "PLANTEDslackEnvHook0123",
    "JWT in an env var": "PLANTEDjwtEnvSig0123456789",
    "cookie in the ComfyUI log": "PLANTEDcookieValue0123",
    "JWT in the ComfyUI log": "PLANTEDjwtLogSig0123456789",
    "Slack webhook path in the ComfyUI log": "PLANTEDslackLogPath0123",
    "`key <value>` in the ComfyUI log": "PLANTEDspacedKey0123456789",
}
ENV = {name: SECRETS[name] for name in ("HF_TOKEN", "RUNPOD_API_KEY", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                                         "CIVITAI_API_KEY")}
ENV |= {"NOTIFY_URL": f"https://hooks.slack.com/services/T0PLANTED1/B0PLANTED2/{SECRETS['Slack webhook in an env var']}",
        "SESSION_INFO": f"eyJhbGciOiJIUzI1NiJ9.eyJQTEFOVEVEIjoxfQ.{SECRETS['JWT in an env var']}"}
SAS_URL = "https://acct.blob.core.windows.net/c?sv=2022-11-02&ss=b&sp=rl&sig="
#: rclone's words around secrets that must survive redaction (issue 10).
CAUSE = ("couldn't fetch token: Post \"https://oauth2.googleapis.com/token\": dial tcp 142.250.74.10:443: "
         "connect: connection refused")
SECTIONS = ["Toolchain", "Summary", "Failures", "To fix", "Checks", "Pod python", "GPUs", "Pod identity", "System",
            "CPU, memory and cgroup", "Disk", "ComfyUI", "Sync", "OOM events", "Logs"]


def service_account() -> dict:
    return {"type": "service_account", "project_id": "pods", "private_key_id": SECRETS["service-account key id"],
            "private_key": f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----\n",
            "client_email": "sync@pods.iam.gserviceaccount.com", "client_id": "1234567890"}


def git_repo(path: Path, message: str) -> None:
    path.mkdir(parents=True, exist_ok=True)
    run = ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=main", "-C", str(path)]
    subprocess.run([*run, "init", "-q"], check=True)
    subprocess.run([*run, "add", "-A"], check=True)
    subprocess.run([*run, "commit", "-q", "--allow-empty", "-m", message], check=True)


def plant(pod: podsim.SimPod) -> subprocess.Popen:
    """Secrets in an rclone.conf, a service-account file, the logs and a ComfyUI command line."""
    root = pod.root
    sa_file = root / "sa.json"
    sa_file.write_text(json.dumps(service_account(), indent=2))
    token = json.dumps({"access_token": SECRETS["rclone access token"], "token_type": "Bearer",
                        "refresh_token": SECRETS["rclone refresh token"], "expiry": "2026-11-23T12:00:00Z"})
    conf = root / "rclone.conf"
    conf.write_text(
        f"[gdrive]\ntype = drive\nclient_id = 123.apps.googleusercontent.com\nclient_secret = {SECRETS['rclone client_secret']}\n"
        f"scope = drive\ntoken = {token}\nteam_drive = 0ABCdefGHI\nservice_account_file = {sa_file}\n\n"
        f"[secret]\ntype = crypt\nremote = gdrive:crypt\npassword = {SECRETS['rclone crypt password']}\n\n"
        f"[azure]\ntype = azureblob\nsas_url = {SAS_URL}{SECRETS['azure SAS signature in rclone.conf']}\n")
    state = pod.workspace / ".podcheck"
    state.mkdir(parents=True)
    (state / "comfyui.log").write_text(
        "Total VRAM 24564 MB, total RAM 64000 MB\n"
        f"GPU 0: NVIDIA GeForce RTX 4090 (UUID: {UUID})\n"
        f"env: HF_TOKEN={SECRETS['HF_TOKEN']} RUNPOD_API_KEY={SECRETS['RUNPOD_API_KEY']}\n"
        f"downloading https://alice:{SECRETS['URL password']}@models.example.com/flux.safetensors\n"
        f"POST /api/upload Authorization: Bearer {SECRETS['bearer token']}\n"
        f"aws configure: AWS_ACCESS_KEY_ID={SECRETS['AWS_ACCESS_KEY_ID']} "
        f"AWS_SECRET_ACCESS_KEY={SECRETS['AWS_SECRET_ACCESS_KEY']}\n"
        f"Cookie: session={SECRETS['cookie in the ComfyUI log']}; theme=dark\n"
        f"proxy handed out eyJhbGciOiJIUzI1NiJ9.eyJsb2ciOjF9.{SECRETS['JWT in the ComfyUI log']} for the session\n"
        f"notify POST /services/T0PLANTED3/B0PLANTED4/{SECRETS['Slack webhook path in the ComfyUI log']} 200\n"
        f"civitai: using api key {SECRETS['`key <value>` in the ComfyUI log']} for downloads\n"
        "To see the GUI go to: http://0.0.0.0:8188\n")
    (state / "sync.log").write_text(
        f"2026/11/23 12:00:00 ERROR : gdrive: token = {token}\n"
        f"2026/11/23 12:00:01 ERROR : bad credentials: {json.dumps(service_account())}\n"
        "2026/11/23 12:00:02 INFO  : output/alice/img.png: Copied (new)\n"
        # recent, so sync.errors quotes it, cut at 220 characters inside the AWS secret
        + (f"{time.strftime('%Y/%m/%d %H:%M:%S')} ERROR : Failed to create file system: {CAUSE}; via "
           ).ljust(200, ".") + f" {SECRETS['AWS_SECRET_ACCESS_KEY']} retrying\n")
    comfy = pod.workspace / "ComfyUI"
    comfy.mkdir()
    (comfy / "comfyui_version.py").write_text('__version__ = "0.3.64"\n')
    (comfy / "main.py").write_text("import time\ntime.sleep(600)\n")
    git_repo(comfy, "ComfyUI 0.3.64")
    git_repo(comfy / "custom_nodes" / "ComfyUI-KJNodes", "nodes")
    # an rclone the pod runs by hand: sync.running quotes its argv cut at 80 characters, inside the AWS secret
    pod.configure(torch={"cuda": "12.9"}, sync={"rclone_config": str(conf), "process_pattern": "rclone rcd"})
    pod.rclone = subprocess.Popen(
        ["rclone", "rcd", "--rc-addr", "127.0.0.1:0", "--rc-no-auth", "--user-agent", SECRETS["AWS_SECRET_ACCESS_KEY"],
         "--azureblob-sas-url", SAS_URL + SECRETS["azure SAS signature in rclone's argv"], "--config", str(conf)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    return subprocess.Popen(
        [sys.executable, str(comfy / "main.py"), "--listen", "127.0.0.1", "--port", "8188", "--use-sage-attention",
         f"--civitai-api-key={SECRETS['CIVITAI_API_KEY']}", "--output-directory", str(pod.workspace / "output/alice")],
        start_new_session=True)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """One planted pod and every output podcheck makes of it (each CLI run imports torch: run each once)."""
    root = tmp_path_factory.mktemp("planted")
    pod = podsim.cpu_pod(root, podsim.torch_venv())
    comfyui = plant(pod)
    out = root / "out"
    out.mkdir()
    try:
        runs = {
            "md": pod.podcheck("report", "-o", str(out / "report.md"), "--bundle", str(out / "bundle.tar.gz"), env=ENV),
            "html": pod.podcheck("report", "--format", "html", "-o", str(out / "report.html"), env=ENV),
            "json": pod.podcheck("report", "--format", "json", "--no-redact-uuids", env=ENV),
        }
        started = time.time()
        runs["check"] = pod.podcheck("--json", str(out / "check.json"), "--junit-xml", str(out / "junit.xml"),
                                     "--prometheus", str(out / "podcheck.prom"), env=ENV)
        finished = time.time()
    finally:
        for proc in (comfyui, pod.rclone):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    return {"pod": pod, "out": out, "runs": runs, "window": (started, finished)}


def outputs(planted) -> dict[str, str]:
    """Every text podcheck produced: stdout/stderr of each run, each file, each bundle member."""
    texts = {f"{name} {stream}": getattr(run, stream) for name, run in planted["runs"].items()
             for stream in ("stdout", "stderr")}
    for path in planted["out"].iterdir():
        if path.suffixes[-2:] == [".tar", ".gz"]:
            with tarfile.open(path) as tar:
                for member in tar.getmembers():
                    texts[f"bundle {member.name}"] = tar.extractfile(member).read().decode()
        else:
            texts[path.name] = path.read_text()
    return texts


def test_report_runs_succeed(planted):
    for name, run in planted["runs"].items():
        assert run.rc == (1 if name == "check" else 0), f"{name}: {run.stderr}"
        assert "Traceback" not in run.stderr


def test_no_planted_secret_in_any_format_or_the_bundle(planted):
    texts = outputs(planted)
    assert {"report.md", "report.html", "check.json", "junit.xml", "podcheck.prom", "json stdout", "check stdout",
            "bundle podcheck-report/report.md", "bundle podcheck-report/report.json",
            "bundle podcheck-report/logs/comfyui.log", "bundle podcheck-report/logs/sync.log"} <= set(texts)
    leaks = [f"{what} in {where}" for where, text in texts.items() for what, value in SECRETS.items() if value in text]
    assert not leaks, leaks
    aws = SECRETS["AWS_SECRET_ACCESS_KEY"]
    pieces = {aws[i:i + 10] for i in range(len(aws) - 9)} - {p for p in (aws[i:i + 10] for i in range(len(aws))) if p in UUID}
    cut = [f"{piece!r} in {where}" for where, text in texts.items() for piece in pieces if piece in text]
    assert not cut, f"pieces of the AWS secret a cut left: {cut[:5]}"
    uuid_leaks = [where for where, text in texts.items() if UUID in text]
    assert uuid_leaks == ["json stdout"]  # the run with --no-redact-uuids, and only it


def test_the_secrets_were_there_to_leak(planted):
    """The places that held secrets are in the report, redacted: the test above could have failed."""
    md = (planted["out"] / "report.md").read_text()
    with tarfile.open(planted["out"] / "bundle.tar.gz") as tar:
        comfy_log = tar.extractfile("podcheck-report/logs/comfyui.log").read().decode()
        sync_log = tar.extractfile("podcheck-report/logs/sync.log").read().decode()
    for name in ("HF_TOKEN", "RUNPOD_API_KEY", "AWS_SECRET_ACCESS_KEY", "CIVITAI_API_KEY"):
        assert f"| {name.replace('_', chr(92) + '_')} | \\[REDACTED\\] |" in md, name
    assert "client_secret = [REDACTED]" in md and "token = [REDACTED]" in md and "password = [REDACTED]" in md
    assert "team_drive = 0ABCdefGHI" in md  # not a secret: kept
    assert "--civitai-api-key=[REDACTED]" in md and "--use-sage-attention" in md  # ComfyUI's command line
    assert "Authorization: [REDACTED]" in comfy_log and "https://alice:[REDACTED]@models.example.com" in comfy_log
    assert "(UUID: GPU-[REDACTED])" in comfy_log
    assert "[REDACTED] private key" in sync_log and "sync@pods.iam.gserviceaccount.com" in sync_log
    assert "Cookie: [REDACTED]" in comfy_log and "/services/[REDACTED] 200" in comfy_log
    assert "using api key [REDACTED] for downloads" in comfy_log and "proxy handed out [REDACTED] for" in comfy_log
    assert "sas_url = [REDACTED]" in md and "--azureblob-sas-url [REDACTED]" in md
    assert "rclone rcd --rc-addr 127.0.0.1:0" in md, "the hand-run rclone's argv is in the report"
    assert CAUSE in sync_log


def test_report_json_has_facts_sections_and_results(planted):
    doc = planted["runs"]["json"].json
    assert doc["schema"] == "podcheck-report/1" and doc["complete"] is True
    assert [s["title"] for s in doc["sections"]] == ["Toolchain", "Checks"] + SECTIONS[5:]
    checks = doc["checks"]
    torch_build = next(r for r in checks["results"] if r["id"] == "gpu.torch_build")
    assert checks["schema"] == "podcheck/1" and torch_build["status"] == "failed"
    assert doc["facts"]["torch"]["version"].startswith("2.13.0")
    assert doc["facts"]["python"]["packages"]["torch"].startswith("2.13.0")
    comfy = next(s for s in doc["sections"] if s["title"] == "ComfyUI")
    assert comfy["rows"]["version"] == "0.3.64" and comfy["rows"]["ComfyUI processes"] == 1  # only this pod's
    assert comfy["texts"]["ComfyUI command lines"].endswith(
        f"--use-sage-attention --civitai-api-key=[REDACTED] --output-directory {planted['pod'].workspace}/output/alice")
    assert comfy["rows"]["custom nodes"] == 1 and comfy["texts"]["custom nodes"].startswith("ComfyUI-KJNodes  ")
    sync = next(s for s in doc["sections"] if s["title"] == "Sync")
    assert sync["rows"]["remotes"] == "gdrive, secret, azure"
    gpus = next(s for s in doc["sections"] if s["title"] == "GPUs")
    assert gpus["not_collected"] == ["could not collect GPUs: NVML: NVML Shared Library Not Found"]


def test_markdown_parses_into_the_expected_sections(planted):
    from markdown_it import MarkdownIt

    tokens = MarkdownIt("commonmark").enable("table").parse((planted["out"] / "report.md").read_text())
    headings, sections, current = [], {}, None
    for i, tok in enumerate(tokens):
        if tok.type == "heading_open" and tok.tag == "h2":
            current = tokens[i + 1].content
            headings.append(current)
            sections[current] = []
        elif current and tok.type in ("inline", "html_block", "fence"):
            sections[current].append(tok)
    assert headings == SECTIONS
    failures = " ".join(t.content for t in sections["Failures"])
    assert "gpu.torch_build" in failures and "torch 2.13.0+cpu is a CPU build; expected CUDA 12.9" in failures
    to_fix = " ".join(t.content for t in sections["To fix"])
    assert "podcheck --fix" in to_fix and "torch" in to_fix
    check_ids = {r["id"] for r in json.loads((planted["out"] / "check.json").read_text())["results"]}
    cells = {t.children[0].content for t in sections["Checks"] if t.children and t.children[0].type == "code_inline"}
    assert cells == check_ids
    logs = sections["Logs"]
    folded = [t.content for t in logs if t.type == "html_block" and t.content.startswith("<details>")]
    assert [f.split("<summary>")[1].split(",")[0] for f in folded] == ["comfyui log", "sync log"]
    assert any(t.type == "fence" and "To see the GUI go to" in t.content for t in logs)


def chromium(tmp: Path, url: str, *args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.skip("chromium is not installed")
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--host-resolver-rules=MAP * ~NOTFOUND",
         f"--user-data-dir={tmp / 'profile'}", *args, url], capture_output=True, text=True, timeout=120)


def page_requests(netlog: Path) -> list[str]:
    """URLs the page itself asked for (not the browser's own background requests)."""
    data = json.loads(netlog.read_text())
    start = data["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in data["events"]
            if e.get("type") == start and "file://" in e.get("params", {}).get("network_isolation_key", "")]


def test_html_renders_in_chromium_and_loads_nothing_external(planted, tmp_path):
    page = (planted["out"] / "report.html").as_uri()
    dom = chromium(tmp_path, page, "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    html = dom.stdout
    summary = html.index('id="summary"')
    box = html[summary:html.index("</section>", summary)]
    assert re.search(r"\d+ failed, \d+ passed, \d+ skipped\. Root causes: .*gpu\.torch_build", box)
    assert "torch 2.13.0+cpu is a CPU build; expected CUDA 12.9 (cu129)" in html
    assert summary < html.index("<details")
    assert html.count("<details") >= 12 and "[REDACTED]" in html

    shot = tmp_path / "report.png"
    netlog = tmp_path / "net.json"
    done = chromium(tmp_path, page, f"--screenshot={shot}", "--window-size=1200,900", f"--log-net-log={netlog}")
    assert done.returncode == 0, done.stderr[-2000:]
    png = shot.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (1200, 900)
    assert len(png) > 20_000  # a rendered page, not a blank one
    assert page_requests(netlog) == []

    control = tmp_path / "control.html"  # the detector sees a page that does load something
    control.write_text('<html><body><img src="http://127.0.0.1:9/x.png"></body></html>')
    chromium(tmp_path, control.as_uri(), f"--screenshot={tmp_path / 'c.png'}", f"--log-net-log={tmp_path / 'c.json'}")
    assert page_requests(tmp_path / "c.json") == ["http://127.0.0.1:9/x.png"]


def test_one_check_run_prints_the_table_and_writes_json_junit_prometheus(planted):
    run = planted["runs"]["check"]
    assert run.stdout.startswith("podcheck: local, profile runtime")
    assert "FAIL   gpu.torch_build" in run.stdout
    data = json.loads((planted["out"] / "check.json").read_text())
    results = {r["id"]: r for r in data["results"]}

    suite = ET.parse(planted["out"] / "junit.xml").getroot().find("testsuite")
    cases = suite.findall("testcase")
    assert int(suite.get("tests")) == len(cases) == len(results)
    assert int(suite.get("failures")) == data["summary"]["failed"] >= 1
    assert int(suite.get("skipped")) == data["summary"]["skipped"]
    for case in cases:
        r = results[case.get("name")]
        failure, skipped = case.find("failure"), case.find("skipped")
        assert (failure is not None) == (r["status"] == "failed")
        assert (skipped is not None) == (r["status"] == "skipped")
        if failure is not None:
            assert failure.get("message") == r["message"]
        if skipped is not None:
            assert skipped.get("message") == r["message"] != ""

    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families((planted["out"] / "podcheck.prom").read_text())}
    ok = {s.labels["id"]: s.value for s in families["podcheck_check_ok"].samples}
    assert ok == {i: (1.0 if r["status"] == "passed" else 0.0) for i, r in results.items() if r["status"] != "skipped"}
    assert ok["gpu.torch_build"] == 0.0 and ok["system.ffmpeg"] == 1.0
    assert {s.labels["area"] for s in families["podcheck_check_ok"].samples} == {
        r["area"] for r in results.values() if r["status"] != "skipped"}
    durations = {s.labels["id"]: s.value for s in families["podcheck_check_duration_seconds"].samples}
    assert set(durations) == set(results) and all(v >= 0 for v in durations.values())
    (last,) = families["podcheck_last_run_timestamp_seconds"].samples
    started, finished = planted["window"]
    assert started <= last.value <= finished
    counts = {s.labels["status"]: s.value for s in families["podcheck_checks"].samples}
    assert counts == {k: float(v) for k, v in data["summary"].items() if k != "root_causes"}
    assert "podcheck_repairs_total" in families  # declared; no repair ran


@pytest.mark.parametrize("fmt, marker", [("md", "| ❌ FAIL | `pod.workspace` | no workspace at "),
                                         ("html", '<tr class="row-failed"><td class="status failed">FAIL</td>'),
                                         ("junit", '<testcase classname="pod" name="pod.workspace"'),
                                         ("prometheus", 'podcheck_check_ok{area="pod",host="local",id="pod.workspace"} 0.0')])
def test_check_prints_any_format(cpu_pod, fmt, marker):
    cpu_pod.configure(pod={"workspace": str(cpu_pod.root / "nowhere")})
    run = cpu_pod.podcheck("--format", fmt, "--select", "pod.workspace")  # no probe: fast
    assert run.rc == 1 and marker in run.stdout, run.stdout


def test_check_messages_are_redacted_in_every_output(cpu_pod, tmp_path):
    secret = SECRETS["HF_TOKEN"]
    cpu_pod.configure(pod={"python": f"/nonexistent/HF_TOKEN={secret}/python"})
    run = cpu_pod.podcheck("--select", "gpu.torch_build", "--json", str(tmp_path / "c.json"),
                           "--junit-xml", str(tmp_path / "j.xml"), "-v")
    assert run.rc == 1 and "pod python not found: /nonexistent/HF_TOKEN=[REDACTED]" in run.stdout
    for text in (run.stdout, run.stderr, (tmp_path / "c.json").read_text(), (tmp_path / "j.xml").read_text()):
        assert secret not in text


def test_bad_report_input_is_one_line(cpu_pod):
    for args in (["--format", "pdf"], ["--hosts", "local://,local://"], ["--profile", "nightly"],
                 ["-o", "/proc/no-such-dir/report.md"]):
        run = cpu_pod.podcheck("report", *args)
        assert run.rc == 2 and run.stderr.startswith("podcheck: error: ") and len(run.stderr.splitlines()) == 1


def hanging_python(tmp_path: Path) -> Path:
    """A pod python whose `import torch` never returns (as on a broken driver)."""
    python = podsim.bare_venv(tmp_path / "venv")
    torch = podsim.site_packages(tmp_path / "venv") / "torch"
    torch.mkdir()
    (torch / "__init__.py").write_text("import time\ntime.sleep(600)\n")
    return python


def test_report_on_a_hanging_probe_is_bounded(cpu_pod, tmp_path):
    cpu_pod.configure(pod={"python": str(hanging_python(tmp_path)), "probe_timeout": 3.0})
    started = time.monotonic()
    run = cpu_pod.podcheck("report", "-o", str(tmp_path / "r.md"))
    elapsed = time.monotonic() - started
    assert run.rc == 0 and elapsed < 3 + 10, elapsed
    md = (tmp_path / "r.md").read_text()
    assert "could not collect everything from the pod python: probe timed out after 3 s during import torch" in md
    assert "Incomplete" not in md and "## Disk" in md
    assert "| numpy | not installed |" in md  # what the probe said before it hung is kept


def test_report_is_written_while_the_probe_hangs(cpu_pod, tmp_path):
    """Killed while the probe hangs, the report on disk is still a usable report."""
    cpu_pod.configure(pod={"python": str(hanging_python(tmp_path)), "probe_timeout": 120.0})
    out = tmp_path / "r.md"
    env = {**os.environ, "PODCHECK_CONFIG": str(cpu_pod.config_path)}
    proc = subprocess.Popen([sys.executable, "-m", "podcheck", "report", "-o", str(out)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=cpu_pod.root)
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and "still collecting Checks" not in (out.read_text() if out.exists() else ""):
            time.sleep(0.1)
        time.sleep(0.5)  # the probe is hanging now
        text = out.read_text()
    finally:
        family = [proc.pid] + [p.pid for p in psutil.Process(proc.pid).children(recursive=True)]
        for pid in family:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
    assert "> **Incomplete:** still collecting Checks when this was written." in text
    for heading in ("## System", "## Disk", "## Sync", "## Logs"):
        assert heading in text


def test_gpu_section_from_nvml_facts():
    """No GPU here: the GPUs section is rendered from NVML facts in tests/data (see the file for sources)."""
    from podcheck.reports import markdown
    from podcheck.reports.redact import Redactor
    from podcheck.services.diagnostics import Diagnostics, Section, fill_gpus

    nvml = json.loads((Path(__file__).parent / "data" / "report" / "h100_nvml.json").read_text())["nvml"]
    section = Section("gpus", "GPUs")
    fill_gpus(section, nvml)
    uuid = nvml["gpus"][0]["uuid"]
    assert section.rows == {
        "source": "nvml", "driver": "575.57.08", "driver CUDA": "12.9",
        "GPU 0": f"NVIDIA H100 80GB HBM3, sm_90 (9.0), 20119 MiB / 81559 MiB used, 87 % busy, {uuid}"}
    assert section.texts == {"GPU 0 processes": "pid 41235: 20000 MiB"}
    doc = Diagnostics(host="pod", sections=[section], facts={"nvml": nvml})
    for keep in (False, True):
        text = markdown.render([], Redactor(uuids=not keep).data(doc))
        assert (uuid in text) is keep and ("GPU-\\[REDACTED\\]" in text) is not keep  # markdown escapes [ ]
