"""attention: SageAttention imports and its kernels run on this GPU."""
import pytest

from podcheck import gpu


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
