"""Image validation against real podman images and containers (`--hosts podman://...`,
`docker://...` through Debian's podman-docker): the README's CI flow (build, manifest, validate,
stale, broken start script), the throwaway container's removal when podcheck is killed, one-line
exit-2 errors for a missing engine, image or runtime, and the same verdicts as the chroot backend."""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import podimages
import podsim
import pytest

from podcheck.host import containers

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("podman")]

START = """#!/bin/sh
# start.sh: the image's entrypoint
cd /ComfyUI
exec /venv/bin/python main.py --listen 0.0.0.0 --port 8188 --use-sage-attention
"""
UI = {"app.py": "print('control panel')\n", "templates/panel.html": "<p>panel</p>\n", "static/app.js": "console.log('ui');\n"}
CONTAINERFILE = "FROM {base}\nCOPY ui /app/ui\nCOPY start.sh /start.sh\n"
NO_GPU = "not run: no GPU (image profile)"
HANG_S = 123  # how long the hanging image's pod python sleeps (a number no other test uses)


@pytest.fixture(autouse=True)
def _podman():
    reason = podimages.why_not()
    if reason:
        pytest.skip(reason)
    yield
    assert podimages.leftovers() == [], "a throwaway container was left behind"


@pytest.fixture
def build():
    builder = podimages.Builder()
    yield builder
    builder.close()


def tag(tmp_path: Path, what: str) -> str:
    return f"localhost/podcheck-test-{what}:{os.getpid()}-{tmp_path.name[-12:].lower().replace('_', '-')}"


def checkout(root: Path, start: str = START) -> Path:
    """A source checkout: a small UI tree, a start script and the Containerfile."""
    for rel, text in UI.items():
        (root / "ui" / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / "ui" / rel).write_text(text)
    (root / "start.sh").write_text(start)
    (root / "Containerfile").write_text(CONTAINERFILE.format(base=podimages.pod_image()))
    return root


def pod_config(pod: podsim.SimPod, **image) -> podsim.SimPod:
    return pod.configure(pod={"python": "/venv/bin/python", "gpu": "absent", "probe_timeout": 120.0},
                         torch={"cuda": "cpu"}, attention={"sage": "required"}, image=image)


def test_ci_flow_build_validate_stale_and_broken_start_script(tmp_path, build):
    """The README's CI flow: manifest, build, validate (exit 0); a source edited after the build, and
    a start script that lost --use-sage-attention, are exit 1 naming the file (and line)."""
    src = checkout(tmp_path / "src")
    pod = pod_config(podsim.SimPod(tmp_path), sources={"/app/ui": "src/ui", "/start.sh": "src/start.sh"},
                     manifest="manifest.json", start_scripts=["/start.sh"])
    def manifest() -> podsim.Run:
        return pod.podcheck("manifest", "src/ui", "src/start.sh", "-o", "manifest.json")

    image = tag(tmp_path, "ci")
    assert manifest().rc == 0
    build(src, image)
    junit = tmp_path / "image.xml"
    run = pod.podcheck("--profile", "image", "--hosts", f"podman://{image}", "--junit-xml", str(junit), "--json", "-")
    assert run.rc == 0, [r for r in run.json["results"] if r["status"] in ("failed", "error")]
    ran = {i: s for i, s in run.statuses().items() if run.result(i)["message"] != NO_GPU}
    assert ran == {"image.configured": "passed", "image.source_fresh": "passed", "image.entrypoint_flags": "passed",
                   "system.ffmpeg": "passed", "gpu.torch_build": "passed", "gpu.torch_set": "passed",
                   "comfyui.installed": "skipped"}
    assert run.result("gpu.torch_build")["message"] == "torch 2.13.0+cpu (CPU build) in /venv/bin/python"
    assert run.result("system.ffmpeg")["message"].startswith("ffmpeg 5.1")
    assert run.result("image.source_fresh")["message"] == "4 file(s) in 2 source(s) match manifest manifest.json"
    assert run.json["host"] == f"podman://{image}"
    suite = ET.parse(junit).getroot().find("testsuite")
    assert suite.get("failures") == "0" and suite.get("errors") == "0"

    (src / "ui/templates/panel.html").write_text("<p>panel, edited after the build</p>\n")  # not rebuilt
    assert manifest().rc == 0
    stale = pod.podcheck("--profile", "image", "--hosts", f"podman://{image}", "--json", "-")
    assert stale.rc == 1
    assert stale.status("image.source_fresh") == "failed"
    assert "1 file(s) differ from src/ui: /app/ui/templates/panel.html" in stale.result("image.source_fresh")["message"]
    assert stale.status("image.entrypoint_flags") == "passed"

    (src / "start.sh").write_text(START.replace(" --use-sage-attention", ""))
    assert manifest().rc == 0
    build(src, image)  # rebuilt from the current sources, so only the start script is wrong
    broken = pod.podcheck("--profile", "image", "--hosts", f"podman://{image}", "--json", "-")
    assert broken.rc == 1 and broken.status("image.source_fresh") == "passed"
    assert broken.result("image.entrypoint_flags")["message"].startswith(
        "/start.sh:4 launches ComfyUI without --use-sage-attention: exec /venv/bin/python main.py --listen")


def test_nothing_configured_is_a_failure_not_a_pass(tmp_path):
    """With no [image] settings both image checks skip; image.configured fails, so exit 1."""
    pod = pod_config(podsim.SimPod(tmp_path))
    run = pod.podcheck("--profile", "image", "--hosts", f"podman://{podimages.pod_image()}")
    assert run.rc == 1
    assert "All applicable checks passed" not in run.stdout
    assert re.search(r"FAIL +image\.configured +nothing to validate: \[image\] sources is empty and \[image\] "
                     r"start_scripts is empty, so image\.source_fresh and image\.entrypoint_flags verify nothing", run.stdout)
    assert re.search(r"SKIP +image\.source_fresh +no \[image\] sources configured", run.stdout)


def test_same_verdicts_as_chroot(tmp_path):
    """One rootfs three ways: chroot://ROOTFS, podman://IMAGE (its import) and docker://IMAGE (podman-docker)."""
    rootfs = podsim.rootfs()
    (tmp_path / "os-release").write_bytes((rootfs / "etc/os-release").read_bytes())
    pod = podsim.SimPod(tmp_path).configure(
        pod={"gpu": "absent"}, attention={"sage": "off"},
        image={"sources": {"/etc/os-release": "os-release"}, "start_scripts": ["/etc/os-release"]})
    docker_bin = tmp_path / "podman-docker"
    docker_bin.mkdir()
    (docker_bin / "docker").symlink_to("/usr/bin/docker")  # podman-docker's; /usr/local/bin/docker has no daemon
    runs = {
        "chroot": pod.podcheck("--profile", "image", "--hosts", f"chroot://{rootfs}", "--json", "-"),
        "podman": pod.podcheck("--profile", "image", "--hosts", f"podman://{podimages.base_image()}", "--json", "-"),
        "docker": pod.podcheck("--profile", "image", "--hosts", f"docker://{podimages.base_image()}", "--json", "-",
                               env={"PATH": f"{docker_bin}:{os.environ['PATH']}"}),
    }
    verdicts = {how: {r["id"]: (r["status"], r["message"]) for r in run.json["results"]} for how, run in runs.items()}
    assert {run.rc for run in runs.values()} == {1}
    assert verdicts["podman"] == verdicts["chroot"] == verdicts["docker"]
    assert verdicts["chroot"]["system.ffmpeg"][0] == "failed"  # minbase: no ffmpeg, no python
    assert verdicts["chroot"]["image.source_fresh"] == ("passed", "1 file(s) in 1 source(s) match the source checkout")
    assert runs["docker"].json["host"] == f"docker://{podimages.base_image()}"


def test_running_container_is_checked_as_it_is(tmp_path):
    """A running container goes straight to testinfra's backend; podcheck neither starts nor removes one."""
    name = f"podcheck-test-running-{os.getpid()}"
    podimages.podman("run", "-d", "--name", name, "--network", "none", "--entrypoint", "sleep",
                     podimages.pod_image(), "300")
    try:
        podimages.podman("exec", name, "sh", "-c", "echo changed at runtime > /etc/motd")
        pod = pod_config(podsim.SimPod(tmp_path), start_scripts=["/etc/motd"])
        (tmp_path / "motd").write_text("changed at runtime\n")
        pod.configure(image={"sources": {"/etc/motd": "motd"}})
        run = pod.podcheck("--profile", "image", "--hosts", f"podman://{name}", "--json", "-")
        assert run.status("image.source_fresh") == "passed"  # the container's own state, not its image's
        assert run.status("gpu.torch_build") == "passed"
        alive = podimages.podman("container", "inspect", "--format", "{{.State.Running}}", name)
        assert alive.stdout.strip() == "true"
        podimages.podman("stop", "-t", "0", name)
        stopped = pod.podcheck("--profile", "image", "--hosts", f"podman://{name}")
        assert stopped.rc == 2
        assert stopped.stderr.strip() == (
            f"podcheck: error: no verdict: container {name} is not running: start it (podman start {name}), "
            "or name its image to check a fresh container")
    finally:
        podimages.podman("rm", "-f", name, check=False)


def test_engine_problems_are_one_line_and_exit_2(tmp_path):
    pod = pod_config(podsim.SimPod(tmp_path))
    image = podimages.base_image()

    def error(hosts: str, **env: str) -> str:
        run = pod.podcheck("--profile", "image", "--hosts", hosts, env=env)
        assert run.rc == 2 and len(run.stderr.strip().splitlines()) == 1 and not run.stdout, run.stderr
        return run.stderr.strip().removeprefix("podcheck: error: no verdict: ")

    no_engines = podsim.path_without("podman", "docker", root=tmp_path)
    assert error(f"podman://{image}", PATH=no_engines) == containers.INSTALL["podman"]
    assert error(f"docker://{image}", PATH=no_engines) == containers.INSTALL["docker"]
    assert error("podman://localhost/podcheck-no-such-image:1") == (
        "no container or image localhost/podcheck-no-such-image:1 in podman: "
        "build it (podman build -t localhost/podcheck-no-such-image:1 .) or pull it first")
    # The sandbox may only lower limits: without default_ulimits, runc cannot start a container.
    (tmp_path / "no-ulimits.conf").write_text('[engine]\nruntime = "runc"\n')
    why = error(f"podman://{image}", CONTAINERS_CONF=str(tmp_path / "no-ulimits.conf"))
    assert why.startswith(f"podman cannot start a container from {image}: ") and "rlimit" in why
    assert why.endswith('default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"] under [containers] '
                        "in /etc/containers/containers.conf")
    # crun, podman's default, is not installed here (and could not run here: hybrid cgroups).
    (tmp_path / "crun.conf").write_text('[containers]\ndefault_ulimits = ["nofile=1024:1024"]\n[engine]\nruntime = "crun"\n')
    why = error(f"podman://{image}", CONTAINERS_CONF=str(tmp_path / "crun.conf"))
    assert "crun" in why and why.endswith('runtime = "runc" under [engine] in /etc/containers/containers.conf')
    refused = pod.podcheck("--fix", "--profile", "image", "--hosts", f"podman://{image}")
    assert refused.rc == 2 and refused.stderr.strip() == (
        f"podcheck: error: --fix cannot repair an image (podman://{image}): the repairs would change only a "
        "throwaway container; fix the Containerfile and rebuild")
    daemonless = "/usr/local/bin/docker"  # the machine image's docker client, with no dockerd
    if os.path.exists(daemonless):
        no_podman_docker = tmp_path / "docker-client"
        no_podman_docker.mkdir()
        (no_podman_docker / "docker").symlink_to(daemonless)
        why = error(f"docker://{image}", PATH=f"{no_podman_docker}:{os.environ['PATH']}")
        assert why.startswith("docker cannot answer: Cannot connect to the Docker daemon")


@pytest.fixture
def hanging_image(tmp_path, build):
    """An image whose pod python hangs (sleep 120), so a run is still going when the test kills it:
    a stand-in for a hung torch import, the real one cannot be made to hang on demand."""
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx/python").write_text(f"#!/bin/sh\nexec sleep {HANG_S}\n")
    (tmp_path / "ctx/python").chmod(0o755)
    (tmp_path / "ctx/Containerfile").write_text(f"FROM {podimages.base_image()}\nCOPY python /usr/local/bin/python\n")
    image = build(tmp_path / "ctx", tag(tmp_path, "hang"))
    pod = podsim.SimPod(tmp_path).configure(pod={"python": "/usr/local/bin/python", "gpu": "absent", "probe_timeout": 300.0})
    return pod, image


def start_run(pod: podsim.SimPod, image: str) -> tuple[subprocess.Popen, str]:
    """A podcheck run in the background, and the throwaway container it started."""
    env = {**os.environ, "PODCHECK_CONFIG": str(pod.config_path)}
    proc = subprocess.Popen([sys.executable, "-m", "podcheck", "--profile", "image", "--hosts", f"podman://{image}"],
                            cwd=pod.root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    def mine() -> list[str]:
        return [n for n in podimages.leftovers() if n.startswith(f"podcheck-{proc.pid}-")]

    try:
        name = podsim.wait_for(mine, timeout=60, step=0.2, what="the throwaway container")[0]
        hung = ["pgrep", "-x", "-f", f"sleep {HANG_S}"]  # the container's processes, seen from the host
        podsim.wait_for(lambda: subprocess.run(hung, check=False, capture_output=True).returncode == 0, timeout=60,
                        what="the hung probe")
    except BaseException:
        podsim.stop(proc)
        raise
    return proc, name


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_terminated_run_removes_its_container(hanging_image, signum):
    pod, image = hanging_image
    proc, name = start_run(pod, image)
    proc.send_signal(signum)
    assert proc.wait(30) == -signum  # it dies by the signal, after removing the container
    assert name not in podimages.leftovers()


def test_killed_run_removes_its_container(hanging_image):
    """kill -9: no handler runs; the watchdog (its stdin pipe closed) removes the container."""
    pod, image = hanging_image
    proc, name = start_run(pod, image)
    proc.kill()
    assert proc.wait(30) == -signal.SIGKILL
    podsim.wait_for(lambda: name not in podimages.leftovers(), timeout=30, step=0.2, what="the watchdog")


def test_next_run_reaps_what_a_killed_run_left(hanging_image, tmp_path):
    """podcheck and its watchdog both killed (a CI runner killing everything): the next run removes it."""
    pod, image = hanging_image
    proc, name = start_run(pod, image)
    watchdog = subprocess.run(["pgrep", "-f", f"read _ignored; exec .* {name}"], check=False, capture_output=True, text=True)
    pids = [int(p) for p in watchdog.stdout.split()]
    assert len(pids) == 1
    os.kill(pids[0], signal.SIGKILL)
    proc.kill()
    proc.wait(30)
    assert name in podimages.leftovers()
    label = podimages.podman("inspect", "--format", '{{index .Config.Labels "podcheck.owner"}}', name).stdout.strip()
    assert containers.owner_gone(label)
    later = pod.podcheck("--profile", "image", "--hosts", "podman://localhost/podcheck-no-such-image:1")
    assert later.rc == 2
    assert f"podcheck: removed container {name}, left behind by a podcheck run that was killed" in later.stderr
    assert name not in podimages.leftovers()


def test_report_on_a_container_target(tmp_path):
    pod = pod_config(podsim.SimPod(tmp_path), start_scripts=["/etc/os-release"])
    image = podimages.pod_image()
    report = pod.podcheck("report", "--format", "json", "--profile", "image", "--hosts", f"podman://{image}")
    assert report.rc == 0, report.stderr
    doc = json.loads(report.stdout)
    assert doc["complete"]
    system = next(s for s in doc["sections"] if s["title"] == "System")
    assert system["rows"]["os"] == "Debian GNU/Linux 12 (bookworm)" and system["rows"]["target"] == f"podman://{image}"
    checks = {r["id"]: r["status"] for r in doc["checks"]["results"]}
    assert checks["gpu.torch_build"] == "passed" and checks["system.ffmpeg"] == "passed"


def test_comfyui_in_the_image(tmp_path, build):
    """The real ComfyUI 0.3.64 tree in an image: found and new enough for sage, its requirements.txt
    judged by the image's own pod python, which lacks them. A venv that meets them is 5.5 GB (the
    registry's torchvision needs the CUDA torch), too heavy for CI; the stand-in ComfyUI, whose
    requirements the image's torch venv meets, shows the pass."""
    parts = podimages.realparts()
    if parts is None:
        pytest.skip("no shared/realparts beside the checkout")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    subprocess.run(["tar", "-C", str(ctx), "-xzf", str(parts / "ComfyUI-0.3.64.tar.gz")], check=True)
    shutil.copytree(Path(__file__).parent / "standins" / "comfyui", ctx / "standin")
    (ctx / "Containerfile").write_text(f"FROM {podimages.pod_image()}\nCOPY ComfyUI-0.3.64 /ComfyUI\nCOPY standin /standin\n")
    image = build(ctx, tag(tmp_path, "comfyui"))
    pod = pod_config(podsim.SimPod(tmp_path), start_scripts=["/etc/os-release"])
    real = pod.configure(pod={"comfyui_dir": "/ComfyUI"}).podcheck(
        "--profile", "image", "--hosts", f"podman://{image}", "--select", "comfyui", "--json", "-")
    result = real.result("comfyui.installed")
    assert result["status"] == "failed" and real.rc == 1
    assert result["message"].startswith(
        "the pod python /venv/bin/python does not meet /ComfyUI/requirements.txt: missing comfyui-frontend-package==1.27.10; ")
    assert "missing torchsde" in result["message"] and "missing torch;" not in result["message"]  # the venv has torch
    standin = pod.configure(pod={"comfyui_dir": "/standin"}).podcheck(
        "--profile", "image", "--hosts", f"podman://{image}", "--select", "comfyui", "--json", "-")
    assert standin.rc == 0 and standin.result("comfyui.installed")["message"] == "ComfyUI in /standin; requirements met"
