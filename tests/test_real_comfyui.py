"""The real ComfyUI 0.3.64 (with the real ComfyUI-Manager) on a pod, judged and repaired by podcheck.

One ComfyUI per module (each start costs 20-70 s here): it is started the way a user often does, by
hand, with faults the checks must find; `podcheck --fix` then restarts it once, and the tests after
that judge the repaired one. The faults, all made by the real programs:
  * `--listen 127.0.0.1` while the pod's proxy needs 0.0.0.0 (comfyui.listen);
  * `--user-directory` without `--database-url`: 0.3.64 keeps its database in ComfyUI/user/comfyui.db
    anyway (comfyui.launch_flags);
  * a custom node whose `import tabulate` fails, with a requirements.txt that names it
    (comfyui.custom_nodes; the repair installs it with the torch set pinned);
  * sage attention called on CPU tensors by ComfyUI's own attention_sage: the real fallback line
    (attention.sage_active). A custom node makes that call once at load, because no model weights are
    here to run a real generation; it removes its trigger file, so the restarted ComfyUI is clean;
  * a prompt whose node raises torch.OutOfMemoryError, through ComfyUI's real /prompt queue and its
    real OOM handling (comfyui.oom). Raised by a node, because a CPU cannot run out of CUDA memory;
  * two `--extra-model-paths-config` options, which a relaunch must both keep;
  * ComfyUI-Manager refusing a git-URL install beyond loopback (comfyui.manager_security).
"""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request

import fixsim
import podsim
import pytest
import realparts
from sim_comfyui import Launcher

from podcheck.domain import comfyui

pytestmark = pytest.mark.xdist_group("real-comfyui")

NEEDS_TABULATE = '''import tabulate  # noqa: F401  (a node whose requirement is missing)
NODE_CLASS_MAPPINGS = {}
'''
SAGE_ONCE = '''"""Calls ComfyUI's own sage attention once at load, on CPU tensors, when its trigger file exists."""
import os
import torch
from comfy.ldm.modules import attention

_TRIGGER = os.path.join(os.path.dirname(__file__), "fire")
if os.path.exists(_TRIGGER):
    os.remove(_TRIGGER)
    q = torch.zeros((1, 4, 64), dtype=torch.float16)
    attention.optimized_attention(q, q, q, heads=1)
NODE_CLASS_MAPPINGS = {}
'''
OOM_NODE = '''"""A node that runs out of GPU memory, as a generation on a too-small GPU does."""
import torch


class PodcheckOOM:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "run"
    CATEGORY = "podcheck"

    def run(self):
        raise torch.OutOfMemoryError("Allocation on device 0 would exceed allowed memory. (out of memory)")


NODE_CLASS_MAPPINGS = {"PodcheckOOM": PodcheckOOM}
'''


def get(url, data=None, timeout=20):
    req = urllib.request.Request(url, data=data.encode() if isinstance(data, str) else data,
                                 method="POST" if data is not None else "GET")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def comfy_argv(pod):
    """(pid, argv) of each ComfyUI running the pod's main.py, found as podcheck finds them (cwd-relative too)."""
    return [(p.pid, list(p.argv)) for p in comfyui.processes(pod.live())]


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    """A pod with the real ComfyUI (+ Manager and three test nodes) started by hand with the faults."""
    root = tmp_path_factory.mktemp("realcomfy")
    pod = fixsim.bare_pod(root, sage="required")
    ws = pod.workspace
    python = realparts.layered_python(ws / "venv")
    comfy = realparts.checkout(ws / "ComfyUI")
    nodes = comfy / "custom_nodes"
    (nodes / "needs_tabulate").mkdir()
    (nodes / "needs_tabulate" / "__init__.py").write_text(NEEDS_TABULATE)
    (nodes / "needs_tabulate" / "requirements.txt").write_text(f"{fixsim.TABULATE}\n")
    (nodes / "sage_once").mkdir()
    (nodes / "sage_once" / "__init__.py").write_text(SAGE_ONCE)
    (nodes / "sage_once" / "fire").write_text("")
    (nodes / "podcheck_oom").mkdir()
    (nodes / "podcheck_oom" / "__init__.py").write_text(OOM_NODE)
    extra = []
    for name in ("a", "b"):
        (root / f"{name}.yaml").write_text(f"{name}:\n  base_path: {root}/models-{name}\n  loras: loras\n")
        extra += ["--extra-model-paths-config", str(root / f"{name}.yaml")]
    for kind in ("output", "input", "temp", "user", "workflows"):
        (ws / kind / "alice").mkdir(parents=True, exist_ok=True)
    port = fixsim.free_port()
    pod.configure(
        pod={"python": str(python), "probe_timeout": 600.0},
        torch={"cuda": "13.0", "spec": realparts.TORCH_SET[0], "vision_spec": realparts.TORCH_SET[1],
               "audio_spec": realparts.TORCH_SET[2], "index_url": ""},
        attention={"sage_spec": "sageattention==1.0.6"},
        comfyui={"repo": str(realparts.upstream(root)), "listen": "0.0.0.0", "port": port, "http_timeout": 10.0,
                 "extra_args": []},
        fix={"pip_args": realparts.pip_args() + ["--find-links", str(fixsim.wheelhouse())], "launch_timeout": 600.0},
    )
    pod.env.update(realparts.pip_env())
    log = pod.state_dir / "comfyui.log"
    user_flags = [part for flag, kind in (("--output-directory", "output"), ("--input-directory", "input"),
                                          ("--temp-directory", "temp"), ("--user-directory", "user"))
                  for part in (flag, str(ws / kind / "alice"))]
    launcher = Launcher()
    began = time.monotonic()
    launcher.start(comfy, "--cpu", "--use-sage-attention", *user_flags, *extra, python=python, log=log, port=port,
                   env={"PYTHONUNBUFFERED": "1"}, timeout=600)
    started = time.monotonic() - began
    print(f"\nreal ComfyUI 0.3.64 (+ Manager) answered after {started:.0f} s")
    code, _ = get(f"http://127.0.0.1:{port}/prompt", json.dumps({"prompt": {"1": {"class_type": "PodcheckOOM",
                                                                                   "inputs": {}}}}))
    assert code == 200, "ComfyUI did not take the prompt"
    podsim.wait_for(lambda: "Got an OOM" in log.read_text(), timeout=120, what="ComfyUI's OOM handling")
    yield pod, port, log, extra
    launcher.stop_all()
    fixsim.stop_pod(root)


@pytest.fixture(scope="module")
def before(real):
    pod, *_ = real
    run = pod.podcheck("--json", "-", timeout=900)
    return run


def test_the_real_comfyui_answers_system_stats_and_queue(real):
    _, port, log, _ = real
    code, text = get(f"http://127.0.0.1:{port}/system_stats")
    stats = json.loads(text)
    assert code == 200 and stats["system"]["comfyui_version"] == "0.3.64"
    code, text = get(f"http://127.0.0.1:{port}/queue")
    queue = json.loads(text)
    assert code == 200 and queue["queue_running"] == [] and queue["queue_pending"] == []  # the OOM prompt ended
    assert "Failed to initialize database" in log.read_text()  # 0.3.64 puts it in ComfyUI/user, absent here


def test_checks_find_what_the_real_comfyui_logged(real, before):
    run = before
    assert run.status("comfyui.running") == "passed", run.result("comfyui.running")
    assert run.status("comfyui.installed") == "passed", run.result("comfyui.installed")
    assert run.status("gpu.torch_set") == "passed", run.result("gpu.torch_set")
    nodes = run.result("comfyui.custom_nodes")
    assert nodes["status"] == "failed" and "needs_tabulate (missing module tabulate)" in nodes["message"], nodes
    assert "sage_once" not in nodes["message"] and "podcheck_oom" not in nodes["message"]
    sage = run.result("attention.sage_active")
    assert sage["status"] == "failed", sage
    assert "Input tensors must be on cuda." in sage["message"] and "not on a CUDA device" in sage["message"]
    assert "reinstalling sage would not help" in sage["message"] and "rebuilds sage" not in sage["message"]
    oom = run.result("comfyui.oom")
    assert oom["status"] == "failed" and "--lowvram" in oom["message"] and "tiled VAE" in oom["message"], oom
    listen = run.result("comfyui.listen")
    assert listen["status"] == "failed" and "listens on 127.0.0.1 only" in listen["message"], listen
    flags = run.result("comfyui.launch_flags")
    assert flags["status"] == "failed" and "comfyui.db is not in its user folder" in flags["message"], flags


def test_sage_active_reads_comfyui_managers_log(real, before, tmp_path):
    """ComfyUI-Manager tees ComfyUI's output to {user dir}/comfyui_{port}.log, each line with a time prefix."""
    pod, port, *_ = real
    manager_log = pod.workspace / "user" / "alice" / f"comfyui_{port}.log"
    text = manager_log.read_text()
    assert "] Error running sage attention: Input tensors must be on cuda." in text
    assert any(line.startswith("[20") and "] Using sage attention" in line for line in text.splitlines())
    run = pod.podcheck("--json", "-", "--select", "attention.sage_active,comfyui.custom_nodes",
                       env={"PODCHECK_CONFIG": str(_config_with_log(pod, manager_log, tmp_path))}, timeout=600)
    assert run.status("attention.sage_active") == "failed", run.result("attention.sage_active")
    assert "not on a CUDA device" in run.result("attention.sage_active")["message"]
    assert "needs_tabulate" in run.result("comfyui.custom_nodes")["message"]


def _config_with_log(pod, log, tmp_path):
    settings = {k: dict(v) for k, v in pod.settings.items()}
    settings.setdefault("comfyui", {})["log"] = str(log)
    path = tmp_path / "podcheck.toml"
    path.write_text(podsim.toml_dumps(settings))
    return path


def test_one_fix_restarts_it_repaired_keeping_every_option(real, before):
    pod, port, log, extra = real
    [(old_pid, _)] = comfy_argv(pod)
    run = pod.podcheck("--fix", "--json", "-", timeout=1800)
    assert run.rc == 0, run.stdout[-5000:] + run.stderr[-3000:]
    relaunch = next(r for r in run.json["repairs"] if r["id"] == "comfyui.relaunch")
    assert relaunch["status"] == "changed" and "needs_tabulate's requirements" in relaunch["message"], relaunch
    for check in ("comfyui.custom_nodes", "attention.sage_active", "comfyui.oom", "comfyui.listen",
                  "comfyui.launch_flags", "comfyui.running"):
        assert run.status(check) == "passed", run.result(check)
    [(pid, argv)] = comfy_argv(pod)
    assert pid != old_pid
    assert argv[argv.index("--listen") + 1] == "0.0.0.0"
    uses = [argv[i + 1] for i, a in enumerate(argv) if a == "--extra-model-paths-config"]
    assert uses == [extra[1], extra[3]], argv  # both uses kept, in order
    assert argv[argv.index("--database-url") + 1] == f"sqlite:///{pod.workspace}/user/alice/comfyui.db"
    assert (pod.workspace / "user" / "alice" / "comfyui.db").exists()
    assert os.path.exists(f"{pod.workspace}/venv/lib/python3.11/site-packages/tabulate.py") or \
        list((pod.workspace / "venv").rglob("tabulate*"))  # installed into the pod venv, not the shared one
    since = log.read_text().rsplit(f"[podcheck] ComfyUI launch pid={pid}", 1)[1]
    assert "Failed to initialize database" not in since and "IMPORT FAILED" not in since


def test_manager_refuses_a_git_install_beyond_loopback_and_the_check_says_why(real):
    pod, port, *_ = real
    code, _ = get(f"http://127.0.0.1:{port}/customnode/install/git_url", "https://github.com/example/node")
    assert code == 403  # security_level normal, --listen 0.0.0.0
    run = pod.podcheck("--json", "-", "--select", "comfyui.manager_security", timeout=600)
    result = run.result("comfyui.manager_security")
    assert result["status"] == "failed", result
    assert "listen 0.0.0.0 (beyond loopback), security_level normal" in result["message"]
    assert "security_level = weak" in result["message"] and "from the terminal" in result["message"]
