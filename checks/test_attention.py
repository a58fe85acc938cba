"""attention: SageAttention imports, its kernels run on this GPU, and the running ComfyUI uses it."""
import pytest

from podcheck import comfyui, gpu


@pytest.mark.podcheck(id="attention.sage_import", repair="sage", needs=("gpu.torch_build",))
def test_sage_import(pod, facts, say):
    """`import sageattention` works in the pod python, and one tiny sageattn() runs on each GPU."""
    mode = pod.config.attention.sage
    if mode == "off":
        pytest.skip('sage is off ([attention] sage = "off")')
    s = facts.sage
    assert s, f"cannot judge sageattention: {facts.probe_error or 'the probe printed nothing about it'}"
    if s.get("error") and s.get("missing_module") == "sageattention":
        if mode == "optional":
            pytest.skip("sageattention is not installed (optional)")
        raise AssertionError(f"sageattention is not installed in the pod python {pod.config.pod.python} (repair: sage)")
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
            "'Error running sage attention' and silently fall back to pytorch attention (repair: sage)")
    modules = ", ".join(s.get("compiled_modules") or []) or "none (Triton kernels)"
    ran = f"; ran on {len(s['calls'])} GPU(s)" if s.get("calls") else ""
    say(f"sageattention {version}; compiled modules: {modules}{ran}")


@pytest.mark.podcheck(id="attention.sage_active", repair="sage", profiles=("runtime",), needs=("comfyui.running",))
def test_sage_active(pod, say):
    """The running ComfyUI really uses sage: it logged "Using sage attention" and no fallback to pytorch
    attention ("Error running sage attention: ...") since it started."""
    if pod.config.attention.sage == "off":
        pytest.skip('sage is off ([attention] sage = "off")')
    if not pod.config.comfyui.enabled:
        pytest.skip("ComfyUI is not used on this pod ([comfyui] enabled = false)")
    procs = comfyui.processes(pod)
    flagged = [p for p in procs if p.args.use_sage_attention]
    if not flagged:
        pytest.skip("no ComfyUI runs with --use-sage-attention (comfyui.launch_flags judges the flag)")
    log = comfyui.read_log(pod, pod.config.comfyui.log)
    if log.text is None:
        pytest.skip(f"cannot read ComfyUI's log {log.path} ({log.error}): set [comfyui] log to the file it writes")
    fell_back, using, unsure = [], [], []
    for proc in flagged:
        if log.mtime is not None and proc.started is not None and log.mtime < proc.started - 2:
            unsure.append(f"{proc}: {log.path} was last written before it started (it logs elsewhere)")
            continue
        lines = comfyui.run_lines(log.text, proc.pid, alone=len(procs) == 1)
        start = comfyui.last_start(lines) if lines is not None else None
        if start is None or start[1] != comfyui.ATTENTION["--use-sage-attention"]:
            unsure.append(f"{proc}: {log.path} does not show its start ('Using sage attention')")
            continue
        errors = [line.strip() for line in lines[start[0] + 1:] if comfyui.SAGE_FALLBACK in line]
        if errors:
            fell_back.append(f"{proc} fell back to pytorch attention {len(errors)} time(s) since it started; "
                             f"last: {errors[-1][:300]}")
        else:
            using.append(str(proc))
    assert not fell_back, (
        "; ".join(fell_back) + f" (in {log.path}). Sage is installed and flagged but its kernels do not run on "
        "this GPU, so generations run on the slower pytorch attention (repair: sage rebuilds it for this GPU)")
    if not using:
        pytest.skip("cannot tell whether sage is used: " + "; ".join(unsure))
    say(f"{', '.join(using)}: using sage attention, no fallback since start ({log.path})"
        + (f"; not judged: {'; '.join(unsure)}" if unsure else ""))
