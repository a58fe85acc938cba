"""memory: RAM and VRAM headroom, and no OOM kill since the last run."""
import pytest

from podcheck.domain import cgroup, gpu, memory
from podcheck.domain.caches import human


@pytest.mark.podcheck(id="memory.ram", repair="memory.free")
def test_ram(pod, say):
    """Available RAM against the cgroup limit (not the host's) is at least min_ram_available_gib."""
    cfg = pod.config.memory
    cg, meminfo = cgroup.read(pod, cfg.cgroup_root)
    room = memory.ram_headroom(cg, meminfo)
    if room is None:
        pytest.skip("cannot read the memory cgroup or /proc/meminfo")
    want = cfg.min_ram_available_gib * memory.GIB
    shown = f"used {human(room.used)} of {human(room.limit)} ({room.source})"
    assert room.available >= want, (
        f"only {human(room.available)} RAM available, below [memory] min_ram_available_gib = "
        f"{cfg.min_ram_available_gib:g}: {shown}; the OOM killer acts at this limit, so the next large model load "
        "or generation may be killed")
    say(f"{human(room.available)} available; {shown}")


@pytest.mark.podcheck(id="memory.vram", repair="memory.free", needs=("gpu.driver",))
def test_vram(pod, gpus, say):
    """Every GPU has at least [memory] min_vram_free_gib free (NVML)."""
    cfg = pod.config.memory
    low = memory.low_vram(gpus, cfg.min_vram_free_gib * memory.GIB)
    assert not low, "; ".join(
        f"{gpu.describe(g)} has {human(g['memory_free'])} VRAM free of {human(g['memory_total'])}" for g in low) + (
        f", below [memory] min_vram_free_gib = {cfg.min_vram_free_gib:g}: a process holds the memory "
        "(a finished training, a second ComfyUI); free it")
    say("; ".join(f"{gpu.describe(g)}: {human(g['memory_free'])} free" for g in gpus
                  if isinstance(g.get("memory_free"), int)))


@pytest.mark.podcheck(id="memory.oom", needs=("pod.workspace",),  # its baseline lives in state_dir
                      remedy="use a smaller model or batch, or a pod with more RAM")
def test_oom(pod, say):
    """No process was OOM-killed since the last run (cgroup counter; kernel log when readable)."""
    cg, _ = cgroup.read(pod, pod.config.memory.cgroup_root)
    ran = pod.run("dmesg")
    dmesg = ran.stdout if ran.ok else None
    if cg is None or cg.oom_kill is None:
        if dmesg is None:
            pytest.skip("no cgroup OOM-kill counter and no readable kernel log")
    count, kills, read = memory.oom_since_last_run(pod, cg, dmesg)
    if count or kills:
        named = "; ".join(f"killed {k.name} (pid {k.pid}) at {k.time:.0f} s after boot"
                          + (f" in cgroup {k.memcg}" if k.memcg else "") for k in kills[-5:])
        total = max(count, len(kills))
        pytest.fail(
            f"{total} OOM kill(s) since the last run ({read})" + (f": {named}" if named else "")
            + ". A process outgrew the memory limit (ComfyUI 'exits' mid-generation); lower the batch or "
            "resolution, use --lowvram, or pick a pod with more RAM", pytrace=False)
    say(f"no OOM kill since the last run ({read})")
