"""Memory judgement: RAM headroom against the cgroup limit, free VRAM per GPU, OOM kills since the last run.

Pure functions over what podcheck.domain.cgroup, NVML and the kernel log give, plus `oom_since_last_run`,
which keeps the OOM-kill counter per boot and cgroup in state (document `oom`).

>>> kills = parse_oom_kills("[ 1320.5] oom-kill:constraint=CONSTRAINT_MEMCG,nodemask=(null),cpuset=/,"
...     "mems_allowed=0,oom_memcg=/p,task_memcg=/p/c,task=python3,pid=15126,uid=0\\n"
...     "[ 1320.6] Memory cgroup out of memory: Killed process 15126 (python3) total-vm:221368kB")
>>> [(k.pid, k.name, k.memcg) for k in kills]
[(15126, 'python3', '/p/c')]
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from podcheck.host.state import State

GIB = 1024 ** 3

_STAMP = re.compile(r"^\[\s*(\d+\.\d+)\]\s*")
_KILLED = re.compile(r"(Memory cgroup out of memory|Out of memory): Killed process (\d+) \(([^)]*)\)")
_OOM_KILL = re.compile(r"oom-kill:(\S+)")


@dataclass
class Headroom:
    available: int
    limit: int
    used: int
    source: str   # "cgroup v1 /path" or "host (/proc/meminfo)"


def ram_headroom(cg: Any, meminfo: dict[str, int]) -> Headroom | None:
    """Available RAM as the OOM killer sees it: the cgroup's limit minus its working set, never above the
    host's MemAvailable; the host's view when the cgroup sets no (smaller) limit."""
    total, host_available = meminfo.get("MemTotal"), meminfo.get("MemAvailable")
    if cg is not None and cg.limit is not None and (total is None or cg.limit < total):
        available = cg.available if host_available is None else min(cg.available, host_available)
        return Headroom(available, cg.limit, cg.working_set, f"cgroup v{cg.version} {cg.path}")
    if total is None or host_available is None:
        return None
    return Headroom(host_available, total, total - host_available, "host (/proc/meminfo; the cgroup sets no limit)")


def low_vram(gpus: list[dict[str, Any]], min_bytes: float) -> list[dict[str, Any]]:
    """The GPUs with less than `min_bytes` free (NVML memory_free)."""
    return [g for g in gpus if isinstance(g.get("memory_free"), int) and g["memory_free"] < min_bytes]


@dataclass
class OomKill:
    time: float          # seconds since boot (the kernel log's clock)
    pid: int
    name: str
    memcg: str | None    # the killed task's cgroup, when the log says


def parse_oom_kills(text: str) -> list[OomKill]:
    """OOM kills in `dmesg` output: "Killed process PID (NAME)", tied to its "oom-kill:...task_memcg=" line."""
    memcg_of: dict[str, str] = {}
    kills = []
    for line in text.splitlines():
        m = _STAMP.match(line)
        t = float(m.group(1)) if m else 0.0
        info = _OOM_KILL.search(line)
        if info:
            fields = dict(f.split("=", 1) for f in info.group(1).split(",") if "=" in f)
            if "pid" in fields and "task_memcg" in fields:
                memcg_of[fields["pid"]] = fields["task_memcg"]
        killed = _KILLED.search(line)
        if killed:
            kills.append(OomKill(t, int(killed.group(2)), killed.group(3), memcg_of.get(killed.group(2))))
    return kills


def in_subtree(memcg: str | None, root: str) -> bool:
    """A kill belongs to cgroup `root` (or below it); a kill of unknown cgroup only to "/"."""
    if root in ("", "/"):
        return True
    return memcg is not None and (memcg == root or memcg.startswith(root.rstrip("/") + "/"))


def oom_since_last_run(pod: Any, cg: Any, dmesg: str | None) -> tuple[int, list[OomKill], str]:
    """(new counter kills, new kernel-log kills in our cgroup subtree, what was read); updates state.

    The baseline is kept per boot and cgroup, so pods sharing a state_dir keep separate counts; with no
    baseline yet, every kill the counter holds is new (it counts since the cgroup was created). The kernel
    log is machine-wide: it is used only where its kills can be tied to this cgroup (a path other than
    "/"), or where there is no counter at all. A container's namespace root ("/") has the counter, and the
    log's kills there belong to the host and its other containers."""

    state = State(pod)
    boot = (pod.read_text("/proc/sys/kernel/random/boot_id") or "").strip()
    path = cg.path if cg is not None else "/"
    key = f"{boot}:{path}"
    doc = state.read("oom")
    doc = doc if isinstance(doc, dict) else {}
    seen = doc.get(key) or {}
    counter = cg.oom_kill if cg is not None else None
    new_count = 0
    if counter is not None:
        before = int(seen.get("oom_kill", 0))
        new_count = counter - before if counter >= before else counter
    kills = []
    last_time = float(seen.get("log_time", 0.0))
    if counter is not None and path in ("", "/"):
        dmesg = None
    if dmesg is not None:
        kills = [k for k in parse_oom_kills(dmesg) if k.time > last_time and in_subtree(k.memcg, path)]
        last_time = max([last_time] + [k.time for k in parse_oom_kills(dmesg)])
    doc[key] = {"oom_kill": counter or 0, "log_time": last_time}
    for stale in list(doc)[:-20]:  # keep the 20 newest baselines
        del doc[stale]
    state.write("oom", doc)
    sources = [f"cgroup v{cg.version} {path} oom_kill counter" if counter is not None else None,
               "kernel log" if dmesg is not None else None]
    return new_count, kills, " and ".join(s for s in sources if s) or "nothing"
