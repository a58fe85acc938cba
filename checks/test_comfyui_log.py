"""comfyui, from its log since launch: custom nodes that failed to import, CUDA out-of-memory during
generations, ComfyUI-Manager refusing installs at its security level; and a listen address the pod's
HTTP proxy cannot reach. Lines may carry ComfyUI-Manager's `[YYYY-MM-DD HH:MM:SS.mmm] ` prefix."""
import configparser
import posixpath

import pytest

from podcheck.domain import comfyui


def comfy_on(cfg):
    return cfg.comfyui.enabled


def run_log(pod):
    """(the processes judged, their lines since launch, the log path), or a skip saying why not."""
    if not pod.config.comfyui.enabled:
        pytest.skip("ComfyUI is not used on this pod ([comfyui] enabled = false)")
    procs = comfyui.processes(pod)
    if not procs:
        pytest.skip(f"no ComfyUI runs {pod.config.pod.comfyui_dir}/main.py (comfyui.running judges that)")
    log = comfyui.read_log(pod, pod.config.comfyui.log)
    if log.text is None:
        pytest.skip(f"cannot read ComfyUI's log {log.path} ({log.error}): set [comfyui] log to the file it writes")
    lines = log.text.splitlines()
    judged, start = comfyui.since_launch(lines, procs, alone=len(procs) == 1)
    if not judged:
        pytest.skip(f"cannot tell which lines of {log.path} are from pid(s) {', '.join(str(p.pid) for p in procs)}: "
                    "they were not launched by podcheck (no launch banner)")
    return judged, lines[start:], log.path


@pytest.mark.podcheck(id="comfyui.custom_nodes", repair="comfyui.relaunch", profiles=("runtime",),
                      needs=("comfyui.running",), applies=comfy_on)
def test_custom_nodes(pod, say):
    """Every custom node loaded at ComfyUI's last start: no `Cannot import ... module for custom nodes` /
    `(IMPORT FAILED)` line since launch. The repair installs a failed node's requirements.txt (torch set
    pinned) and restarts ComfyUI."""
    judged, lines, path = run_log(pod)
    failures = comfyui.node_failures(lines)
    who = " and ".join(str(p) for p in judged)
    assert not failures, f"{who} could not load {len(failures)} custom node(s): " + "; ".join(
        f"{f.name} ({'missing module ' + f.missing_module if f.missing_module else f.error[:200]})" for f in failures
    ) + f" (in {path}). Their nodes are missing from every workflow; --fix installs each node's requirements.txt " \
        "with the torch set pinned, then restarts ComfyUI"
    say(f"{who}: every custom node loaded")


OOM_REMEDY = ("in the workflow: a smaller image size or batch, a tiled VAE decode, an fp8 or smaller model; in "
              "ComfyUI's flags: --lowvram (or --novram), --reserve-vram 1.0, --disable-smart-memory; or a GPU with "
              "more memory")


@pytest.mark.podcheck(id="comfyui.oom", profiles=("runtime",), needs=("comfyui.running",), applies=comfy_on,
                      remedy="smaller images or batches, tiled VAE decode, an fp8 model; or --lowvram / --reserve-vram")
def test_oom(pod, say):
    """No generation ran out of GPU memory since ComfyUI started (`torch.OutOfMemoryError`, `Allocation on
    device`). No repair: the remedy is in the workflow or the flags, the message says which."""
    judged, lines, path = run_log(pod)
    found = comfyui.oom_lines(lines)
    who = " and ".join(str(p) for p in judged)
    assert not found, (f"{who} ran out of GPU memory {len(found)} time(s) since launch; last: {found[-1][:300]} "
                       f"(in {path}). Remedies: {OOM_REMEDY}")
    say(f"{who}: no out-of-memory error since launch")


def manager_config(pod, proc):
    """ComfyUI-Manager's config.ini for a process ({user dir}/default/ComfyUI-Manager/config.ini), parsed."""
    path = posixpath.join(proc.dirs(pod.config.pod.comfyui_dir).user, "default", "ComfyUI-Manager", "config.ini")
    text = pod.read_text(path)
    parser = configparser.ConfigParser()
    try:
        parser.read_string(text or "")
    except configparser.Error:
        pass
    return path, parser.get("default", "security_level", fallback="normal")


@pytest.mark.podcheck(id="comfyui.manager_security", profiles=("runtime",), needs=("comfyui.running",),
                      applies=comfy_on, remedy="install the node from the terminal (git clone into custom_nodes), "
                      "then podcheck --fix; or security_level = weak only on a private port")
def test_manager_security(pod, say):
    """ComfyUI-Manager refused no install since launch. Listening beyond loopback (as behind the pod's proxy),
    its security_level `normal` refuses git-URL and pip installs ("To use this feature, you must either set
    '--listen' to a local IP ..."). No repair: lowering the level opens installs to anyone who reaches the port."""
    if not pod.exists(f"{pod.config.pod.comfyui_dir}/custom_nodes/ComfyUI-Manager"):
        pytest.skip("ComfyUI-Manager is not installed (custom_nodes/ComfyUI-Manager)")
    judged, lines, log_path = run_log(pod)
    refused = comfyui.manager_refusals(lines)
    notes = []
    for proc in judged:
        path, level = manager_config(pod, proc)
        local = comfyui.is_loopback(proc.args.listen)
        notes.append(f"{proc}: listen {proc.args.listen} ({'loopback' if local else 'beyond loopback'}), "
                     f"security_level {level} ({path})")
    assert not refused, (
        f"ComfyUI-Manager refused {len(refused)} action(s) since launch; last: {refused[-1][:300]} (in {log_path}); "
        f"{'; '.join(notes)}. Beyond loopback, only security_level = weak allows git-URL and pip installs, and "
        "weak lets anyone who reaches the port install code: install the node from the terminal instead "
        "(git clone into custom_nodes, then podcheck --fix installs its requirements and restarts ComfyUI), or "
        "set security_level = weak in that config.ini only on a pod whose port is private")
    say("; ".join(notes) + "; no install refused since launch")


@pytest.mark.podcheck(id="comfyui.listen", repair="comfyui.relaunch", profiles=("runtime",),
                      needs=("comfyui.running",), applies=comfy_on)
def test_listen(pod, say):
    """Every ComfyUI listens where the pod's HTTP proxy reaches it: not on loopback alone when [comfyui]
    listen is beyond loopback (RunPod's proxy connects to the pod's address, never to 127.0.0.1)."""
    if not pod.config.comfyui.enabled:
        pytest.skip("ComfyUI is not used on this pod ([comfyui] enabled = false)")
    wanted = pod.config.comfyui.listen
    if comfyui.is_loopback(wanted):
        pytest.skip(f"[comfyui] listen is {wanted}: this pod serves ComfyUI on loopback only (no proxy)")
    procs = comfyui.processes(pod)
    if not procs:
        pytest.skip(f"no ComfyUI runs {pod.config.pod.comfyui_dir}/main.py (comfyui.running judges that)")
    local = [p for p in procs if comfyui.is_loopback(p.args.listen)]
    assert not local, "; ".join(
        f"{p} listens on {p.args.listen} only" + ("" if p.args.has("--listen") else " (no --listen: ComfyUI's default)")
        for p in local) + (f": the pod's HTTP proxy cannot reach it; [comfyui] listen is {wanted} "
                           "(--fix restarts it with --listen from the config)")
    say("; ".join(f"{p} listens on {p.args.listen}" for p in procs))
