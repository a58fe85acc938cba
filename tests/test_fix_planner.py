"""The fix planner on check results: what is due, what it needs, in which order, what --safe-only and
--background do. Pure functions over results and markers: no pod needed."""
from __future__ import annotations

from types import SimpleNamespace

from podcheck.fix import planner
from podcheck.fix.markers import Marker, fingerprint
from podcheck.fix.repair import Repair
from podcheck.results import CheckResult

CFG = SimpleNamespace(attention=SimpleNamespace(sage="required"))


def repair(rid, needs=(), slow=False, blast="safe", may_precede=()):
    cls = type(rid, (Repair,), {"id": rid, "description": rid, "needs": tuple(needs), "slow": slow,
                                "blast": blast, "may_precede": tuple(may_precede)})
    return cls()


REPAIRS = {r.id: r for r in [
    repair("ffmpeg"),
    repair("venv"),
    repair("torch", needs=["venv"], slow=True, blast="replaces-packages"),
    repair("comfyui", needs=["torch"], slow=True, blast="replaces-packages"),
    repair("sage", needs=["torch"], slow=True, blast="replaces-packages"),
    repair("isolation.user_dirs"),
    repair("comfyui.launch", needs=["comfyui", "isolation.user_dirs", "sage"], blast="restarts-service",
           may_precede=["sage"]),
]}


def check(cid, status, repair=None, blocked_by=None):
    return CheckResult(id=cid, area=cid.split(".")[0], status=status, repair=repair, blocked_by=blocked_by)


HEALTHY = [check("system.ffmpeg", "passed", "ffmpeg"), check("gpu.torch_build", "passed", "torch"),
           check("comfyui.installed", "passed", "comfyui"), check("attention.sage_import", "passed", "sage"),
           check("isolation.user_dirs", "passed", "isolation.user_dirs"),
           check("comfyui.running", "passed", "comfyui.launch")]
INPUTS = {"torch": {"spec": "torch==2.13.0"}, "comfyui": {"requirements": "sha-1"}, "sage": {"spec": "sageattention"},
          "ffmpeg": None, "venv": {"python": "/ws/venv/bin/python"}}


def recorded(inputs=INPUTS):
    return {rid: Marker(rid, fingerprint(i)) for rid, i in inputs.items() if i is not None}


def plan(results, markers=None, inputs=INPUTS, **kw):
    return planner.make(REPAIRS, results, recorded() if markers is None else markers, inputs, CFG, **kw)


def with_status(results, **statuses):
    out = []
    for r in results:
        new = statuses.get(r.id.replace(".", "_"))
        out.append(check(r.id, new, r.repair) if new else r)
    return out


def test_healthy_pod_with_markers_plans_nothing():
    p = plan(HEALTHY)
    assert not p and p.steps == []
    assert set(p.idle) == {"ffmpeg", "torch", "comfyui", "sage", "isolation.user_dirs", "comfyui.launch", "venv"}


def test_failed_check_makes_its_repair_due_with_needs_first():
    p = plan(with_status(HEALTHY, gpu_torch_build="failed"))
    assert [s.id for s in p.steps] == ["venv", "torch"]
    venv, torch = p.steps
    assert torch.due and torch.reason == "gpu.torch_build failed"
    assert not venv.due and venv.reason == "needed by torch"  # no check judges the venv: it runs (cheaply)


def test_changed_input_reruns_only_that_repair():
    p = plan(HEALTHY, inputs={**INPUTS, "comfyui": {"requirements": "sha-2"}})
    assert [s.id for s in p.steps] == ["comfyui"]  # torch's checks pass and its inputs are unchanged
    assert p.steps[0].reason == "inputs changed: requirements"


def test_no_marker_means_due_once_but_only_where_a_check_applies():
    results = with_status(HEALTHY, attention_sage_import="skipped")
    p = plan(results, markers={})
    assert [s.id for s in p.steps] == ["venv", "torch", "comfyui"]
    assert all(s.reason == "inputs not recorded yet" for s in p.steps if s.id != "venv")
    legacy = {"torch": Marker("torch", None, source="legacy: /ws/.install_markers/torch")}
    reasons = {s.id: s.reason for s in plan(HEALTHY, markers={**recorded(), **legacy}).steps}
    assert reasons == {"venv": "needed by torch",
                       "torch": "recorded by legacy: /ws/.install_markers/torch, inputs unknown"}


def test_blocked_check_makes_its_repair_due_only_when_the_blocker_is_being_repaired():
    bare = [check("gpu.torch_build", "failed", "torch"),
            check("attention.sage_import", "skipped", "sage", blocked_by="gpu.torch_build"),
            check("gpu.torch_sees_gpu", "skipped", "torch", blocked_by="gpu.driver"),
            check("gpu.driver", "failed", None)]
    p = plan(bare, markers={})
    assert [s.id for s in p.steps] == ["venv", "torch", "sage"]
    assert p.steps[2].reason == "attention.sage_import blocked by gpu.torch_build"
    no_repair = [check("gpu.driver", "failed"), check("attention.sage_import", "skipped", "sage", blocked_by="gpu.driver")]
    assert [s.id for s in plan(no_repair).steps] == []


def test_safe_only_skips_risky_repairs_and_what_needs_them():
    results = with_status(HEALTHY, gpu_torch_build="failed", system_ffmpeg="failed", comfyui_running="failed")
    p = plan(results, safe_only=True)
    skips = {s.id: s.skip for s in p.steps}
    assert skips["ffmpeg"] is None and skips["venv"] is None
    assert skips["torch"] == "--safe-only: its blast radius is replaces-packages"
    assert skips["comfyui.launch"] == "--safe-only: its blast radius is restarts-service"
    assert bool(p)  # ffmpeg and venv still run


def test_background_defers_slow_repairs_and_their_dependents_but_launches_before_sage():
    bare = [check("system.ffmpeg", "failed", "ffmpeg"), check("gpu.torch_build", "failed", "torch"),
            check("comfyui.installed", "failed", "comfyui"),
            check("attention.sage_import", "skipped", "sage", blocked_by="gpu.torch_build"),
            check("isolation.user_dirs", "failed", "isolation.user_dirs"),
            check("comfyui.running", "failed", "comfyui.launch")]
    fg = plan(bare, markers={})
    assert [s.id for s in fg.steps] == ["ffmpeg", "venv", "torch", "comfyui", "sage", "isolation.user_dirs",
                                        "comfyui.launch"]
    assert not any(s.background for s in fg.steps)
    bg = plan(bare, markers={}, background=True)
    assert [s.id for s in bg.foreground] == ["ffmpeg", "venv", "isolation.user_dirs"]
    assert [s.id for s in bg.background] == ["torch", "comfyui", "comfyui.launch", "sage"]
    ready = [check(r.id, "passed", r.repair) for r in bare if r.repair != "sage"] + [
        check("attention.sage_import", "failed", "sage"), check("comfyui.running", "failed", "comfyui.launch")]
    p = plan(ready, background=True)  # ComfyUI need not wait for a sage build
    assert [(s.id, s.background) for s in p.steps] == [("comfyui.launch", False), ("sage", True)]


def test_force_makes_a_repair_due_whatever_the_checks_say():
    p = plan(HEALTHY, force=("sage",))
    assert [(s.id, s.reason) for s in p.steps] == [("sage", "left to the background run")]
