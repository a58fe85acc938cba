"""attention: SageAttention imports, its kernels run on this GPU, and the running ComfyUI uses it."""
import pytest

from podcheck.domain import comfyui, comfyui_log, gpu


@pytest.mark.podcheck(id="attention.sage_import", repair="sage", needs=("gpu.torch_build",), when="attention.sage")
def test_sage_import(pod, facts, say):
    """`import sageattention` works in the pod python, and one tiny sageattn() runs on each GPU."""
    mode = pod.config.attention.sage
    s = facts.sage
    assert s, f"cannot judge sageattention: {facts.probe_error or 'the probe printed nothing about it'}"
    if s.get("error") and s.get("missing_module") == "sageattention":
        if mode == "optional":
            pytest.skip("sageattention is not installed (optional)")
        raise AssertionError(f"sageattention is not installed in the pod python {pod.config.pod.python}")
    version = s.get("version") or "unknown version"
    assert not s.get("error"), (
        f"import sageattention {version} fails: {s['error']}"
        + (f" (its dependency {s['missing_module']} is missing)" if s.get("missing_module") else ""))
    broken = s.get("broken_modules") or {}
    assert not broken, "sageattention {} has compiled modules that do not load: {}".format(
        version, "; ".join(f"{name}: {why}" for name, why in broken.items()))
    for call in s.get("calls") or []:
        device = next((g for g in facts.gpus if g.get("index") == call["index"]), {"index": call["index"]})
        assert call["result"] == "ok", (
            f"sageattn() fails on {gpu.describe(device)}: {call['result']}; ComfyUI would log "
            "'Error running sage attention' and silently fall back to pytorch attention")
    modules = ", ".join(s.get("compiled_modules") or []) or "none (Triton kernels)"
    ran = f"; ran on {len(s['calls'])} GPU(s)" if s.get("calls") else ""
    say(f"sageattention {version}; compiled modules: {modules}{ran}")


@pytest.mark.podcheck(id="attention.sage_active", repair="comfyui.relaunch", profiles=("runtime",),
                      needs=("comfyui.running",), when=("attention.sage", "comfyui.enabled"))
def test_sage_active(pod, say):
    """The running ComfyUI really uses sage: its log shows no fallback to pytorch attention since it started.

    ComfyUI logs "Using sage attention" whenever the flag is set, and "Error running sage attention: ...,
    using pytorch attention instead" each time a call falls back; the error says why (tensors not on CUDA,
    a head size or dtype sage has no kernel for, kernels not built for this GPU). Lines may carry
    ComfyUI-Manager's `[YYYY-MM-DD HH:MM:SS.mmm] ` prefix. The repair restarts that ComfyUI (after
    reinstalling sage when sage's own checks fail), so the check judges the new run."""
    procs = comfyui.processes(pod)
    flagged = [p for p in procs if p.args.use_sage_attention]
    if not flagged:
        pytest.skip("no ComfyUI runs with --use-sage-attention (comfyui.launch_flags judges the flag)")
    log = comfyui_log.read_log(pod, pod.config.comfyui.log)
    if log.text is None:
        pytest.skip(f"cannot read ComfyUI's log {log.path} ({log.error}): set [comfyui] log to the file it writes")
    lines = log.text.splitlines()
    judged, start = _since_launch(lines, flagged, alone=len(procs) == 1)
    if not judged:
        pytest.skip(f"cannot tell which lines of {log.path} are from pid(s) {', '.join(str(p.pid) for p in flagged)}: "
                    "they were not launched by podcheck (no launch banner)")
    who = " and ".join(str(p) for p in judged)
    oldest = min((p.started for p in judged if p.started), default=None)
    if log.mtime is not None and oldest is not None and log.mtime < oldest - 2:
        pytest.skip(f"{log.path} was last written before {who} started: it logs elsewhere ([comfyui] log)")
    run = [comfyui_log.strip_prefix(line).strip() for line in lines[start:]]
    if comfyui.ATTENTION["--use-sage-attention"] not in run:
        pytest.skip(f"{who} has not logged its attention choice yet (still starting?)")
    errors = [line for line in run if line.startswith(comfyui_log.SAGE_FALLBACK)]
    if errors:
        cause, rebuild = comfyui_log.sage_cause(errors[-1])
        remedy = ("restarting it after rebuilding sage for this GPU makes the check judge a new run" if rebuild
                  else "restarting it lets the check judge a new run; reinstalling sage would not help")
        raise AssertionError(
            f"{who} fell back to pytorch attention {len(errors)} time(s) since {'it' if len(judged) == 1 else 'they'} "
            f"started: {cause}; last: {errors[-1][:300]} (in {log.path}). Generations run on the slower pytorch "
            f"attention ({remedy})")
    unjudged = [str(p) for p in flagged if p not in judged]
    say(f"{who}: using sage attention, no fallback since start ({log.path})"
        + (f"; not judged (no launch banner): {', '.join(unjudged)}" if unjudged else ""))


def _since_launch(lines, flagged, alone):
    """comfyui_log.since_launch, for sage runs: without a banner, judged only when the last start logged sage."""
    judged, start = comfyui_log.since_launch(lines, flagged, alone)
    if judged and not any(comfyui_log.launch_line(lines, p.pid) is not None for p in judged):
        last = comfyui_log.last_start(lines)
        if not last or last[1] != comfyui.ATTENTION["--use-sage-attention"] or last[0] < start:
            return [], 0
    return judged, start
