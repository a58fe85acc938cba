"""The parts of `podcheck report` (podcheck.services.diagnostics): what each section holds and how
it is gathered through the pod, in PARTS order; the helpers they share.
"""
from __future__ import annotations

import json
import platform
import re
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from podcheck import __version__, facts, runner
from podcheck.domain import cgroup, comfyui, memory, syncloop_control, toolchain
from podcheck.host import procs
from podcheck.host.pod import Pod, quote
from podcheck.results import Report

if TYPE_CHECKING:  # the report's Redactor, taught the secret values met on the way
    from podcheck.reports.redact import Redactor

TAIL_LINES = 40          # log lines shown in the report
RAW_LOG_BYTES = 1 << 20  # log bytes kept for the bundle
ENV_PREFIXES = ("RUNPOD_", "PODCHECK_", "CUDA_", "NVIDIA_", "PYTORCH_", "TORCH", "TRITON_", "HF_", "HUGGING",
                "CIVITAI_", "COMFY", "RCLONE_", "AWS_", "XDG_CACHE", "LD_LIBRARY_PATH")


@dataclass
class Section:
    key: str
    title: str
    rows: dict[str, Any] = field(default_factory=dict)   # short facts, shown as a table
    texts: dict[str, str] = field(default_factory=dict)  # long text (log tails, config), shown folded
    missing: list[str] = field(default_factory=list)     # "could not collect <what>: <why>"

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.key, "title": self.title, "rows": self.rows, "texts": self.texts,
                "not_collected": self.missing}



class Context:
    """What the parts share: the pod, the redactor to teach, the check runner, the gathered facts."""

    def __init__(self, pod: Pod, redactor: Redactor, run_checks: Callable[[], Report]):
        self.pod, self.cfg, self.redactor, self.run_checks = pod, pod.config, redactor, run_checks
        self.doc: Any = None  # the diagnostics.Diagnostics being filled (set by collect)

    def run(self, *argv: str, timeout: float | None = None):
        return self.pod.run(*argv, timeout=timeout)

    def read(self, path: str) -> tuple[str | None, str]:
        ran = self.run("cat", "--", path)
        if ran.ok:
            return ran.stdout, ""
        return None, ("no such file" if "No such file" in ran.stderr else ran.why())



# --- the parts -------------------------------------------------------------------------------------

def _identity(ctx: Context, s: Section) -> None:
    ran = ctx.run("env")
    if not ran.ok:
        s.missing.append(f"could not collect the environment: {ran.why()}")
        return
    env = dict(line.split("=", 1) for line in ran.stdout.splitlines() if "=" in line and not line.startswith(" "))
    ctx.redactor.learn_env(env)
    s.rows["hostname"] = env.get("HOSTNAME") or first_line(ctx.run("uname", "-n").stdout)
    s.rows.update({k: env[k] for k in sorted(env) if k.startswith(ENV_PREFIXES)})


def _system(ctx: Context, s: Section) -> None:
    s.rows["podcheck"] = f"{__version__} (python {platform.python_version()}, {sys.executable})"
    s.rows["target"] = ctx.pod.name
    text, why = ctx.read("/etc/os-release")
    pretty = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', text or "", re.M)
    if pretty:
        s.rows["os"] = pretty.group(1)
    else:
        s.missing.append(f"could not collect the OS name: {why or 'no PRETTY_NAME in /etc/os-release'}")
    row(ctx, s, "kernel", "uname", "-srvm")


def _resources(ctx: Context, s: Section) -> None:

    row(ctx, s, "cpus", "nproc")
    text, _ = ctx.read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", text or "", re.M)
    if model:
        s.rows["cpu"] = model.group(1).strip()
    cg, meminfo = cgroup.read(ctx.pod, ctx.cfg.memory.cgroup_root)
    if meminfo:
        s.rows["ram total (host)"] = gib(meminfo.get("MemTotal"))
        s.rows["ram available (host view)"] = gib(meminfo.get("MemAvailable"))
    else:
        s.missing.append("could not collect memory: /proc/meminfo is not readable")
    if cg is None:
        s.missing.append("could not collect the memory cgroup: no readable memory.max or memory.limit_in_bytes")
    else:
        s.rows["cgroup"] = f"v{cg.version} {cg.path} ({cg.dir})"
        s.rows["cgroup memory limit"] = "none" if cg.limit is None else gib(cg.limit)
        s.rows["cgroup working set"] = gib(cg.working_set)
        if cg.oom_kill is not None:
            s.rows["cgroup OOM kills"] = cg.oom_kill
    headroom = memory.ram_headroom(cg, meminfo)
    if headroom is not None:
        s.rows["ram available to the pod"] = f"{gib(headroom.available)} of {gib(headroom.limit)} ({headroom.source})"


def _disk(ctx: Context, s: Section) -> None:
    workspace = ctx.cfg.pod.workspace
    for label, flag in (("space", "-k"), ("inodes", "-i")):
        ran = ctx.run("df", "-P", flag, "--", workspace)
        lines = ran.stdout.strip().splitlines()
        if not ran.ok or len(lines) < 2:
            s.missing.append(f"could not collect disk {label} of {workspace}: {ran.why()}")
            continue
        cols = lines[-1].split()
        if label == "space":
            size, used, free = (int(c) * 1024 for c in cols[1:4])
            s.rows["workspace"] = f"{workspace} on {cols[0]} ({cols[5]})"
            s.rows["disk"] = f"{gib(used)} used of {gib(size)}, {gib(free)} free ({cols[4]})"
        else:
            s.rows["inodes"] = f"{cols[2]} used of {cols[1]}, {cols[3]} free ({cols[4]})"


#: Every custom node ComfyUI loads: a folder (a link to one too) or a single `.py` file, not
#: __pycache__ nor a hidden entry; with its git commit, `-` when it has none.
_NODES = ('for d in "$1"/*; do n=$(basename "$d"); case "$n" in __pycache__|__init__.py) continue;; esac; '
          'if [ -d "$d" ]; then c=$(git -c safe.directory="*" -C "$d" rev-parse --short HEAD 2>/dev/null) || c=-; '
          'elif [ "${n%.py}" != "$n" ] && [ -f "$d" ]; then c=file; else continue; fi; '
          'printf "%s\\t%s\\n" "$n" "$c"; done')


def _comfyui(ctx: Context, s: Section) -> None:
    root = ctx.cfg.pod.comfyui_dir
    text, why = ctx.read(f"{root}/comfyui_version.py")
    version = re.search(r"__version__\s*=\s*['\"]([^'\"]+)", text or "")
    if version:
        s.rows["version"] = version.group(1)
    else:
        s.missing.append(f"could not collect the ComfyUI version: {why or 'no __version__'} ({root}/comfyui_version.py)")
    ran = ctx.run("git", "-c", "safe.directory=*", "-C", root, "log", "-1", "--format=%H %cI")
    if ran.ok and ran.stdout.strip():
        s.rows["commit"] = ran.stdout.strip()
    else:
        s.missing.append(f"could not collect the ComfyUI commit: {ran.why()}")
    ran = ctx.run("sh", "-c", _NODES, "sh", f"{root}/custom_nodes", timeout=30)
    if ran.ok:
        nodes = [line.split("\t") for line in ran.stdout.splitlines() if "\t" in line]
        s.rows["custom nodes"] = len(nodes)
        if nodes:
            s.texts["custom nodes"] = "\n".join(f"{name}  {commit}" for name, commit in nodes)
    else:
        s.missing.append(f"could not collect the custom nodes: {ran.why()}")

    running = comfyui.processes(ctx.pod)
    s.rows["ComfyUI processes"] = len(running)
    if running:
        s.texts["ComfyUI command lines"] = "\n".join(f"{p}: {quote(p.argv)}" for p in running)


def _sync(ctx: Context, s: Section) -> None:
    sync = ctx.cfg.sync
    s.rows["enabled"] = sync.enabled
    s.rows["target"] = f"{sync.remote}:{sync.remote_root}"
    text, why = ctx.read(sync.rclone_config)
    if text is None:
        s.missing.append(f"could not collect the rclone config {sync.rclone_config}: {why}")
    else:
        ctx.redactor.learn_config(text)
        remotes = re.findall(r"^\[([^\]]+)\]", text, re.M)
        s.rows["remotes"] = ", ".join(remotes) or "none"
        s.texts[f"rclone config ({sync.rclone_config})"] = text
        for key_file in re.findall(r"^\s*service_account_file\s*=\s*(\S.*?)\s*$", text, re.M):
            content, _ = ctx.read(key_file)
            if content:  # never shown; its secret values are redacted wherever they appear
                try:
                    ctx.redactor.learn_json(json.loads(content))
                except ValueError:
                    pass
    row(ctx, s, "rclone version", "rclone", "version")

    s.rows["sync loop pid"] = syncloop_control.running_pid(ctx.pod) or "not running"
    status = syncloop_control.status(ctx.pod)
    if status is not None:
        s.texts["sync loop status"] = json.dumps(status, indent=2)
    rclones = [f"{p.pid} {p.args}" for p in procs.listing(ctx.pod) if re.search(r"(^|/)rclone\s", p.args)]
    s.rows["rclone processes"] = len(rclones)
    if rclones:
        s.texts["rclone processes"] = "\n".join(rclones)


def _oom(ctx: Context, s: Section) -> None:

    ran = ctx.run("dmesg")
    if not ran.ok:
        s.missing.append(f"could not collect the kernel log: {ran.why()}")
        return
    kills = memory.parse_oom_kills(ran.stdout)
    s.rows["OOM kills in the kernel log"] = len(kills)
    if kills:
        s.texts["OOM kills (last 20)"] = "\n".join(
            f"[{k.time:.1f} s after boot] pid {k.pid} ({k.name}), cgroup {k.memcg or 'unknown'}" for k in kills[-20:])


def _logs(ctx: Context, s: Section) -> None:
    logs = {"comfyui": ctx.cfg.comfyui.log, "sync": ctx.cfg.sync.log,
            "podcheck": f"{ctx.cfg.pod.state_dir}/podcheck.log",
            "fix": f"{ctx.cfg.pod.state_dir}/fix.log"}  # the last --fix: every command it ran, with its tail
    for name, path in logs.items():
        ran = ctx.run("tail", "-c", str(RAW_LOG_BYTES), "--", path)
        if not ran.ok:
            why = "no such file" if "No such file" in ran.stderr else ran.why()
            s.missing.append(f"could not collect the {name} log {path}: {why}")
            continue
        ctx.doc.logs[f"{name}.log"] = ran.stdout
        tail = ran.stdout.splitlines()[-TAIL_LINES:]
        s.texts[f"{name} log, last {len(tail)} lines ({path})"] = "\n".join(tail)


def _checks(ctx: Context, s: Section) -> None:

    try:
        report = ctx.run_checks()
    except runner.RunError as exc:
        s.missing.append(f"could not run the checks: {exc}")
        return
    ctx.doc.checks = report
    ctx.doc.facts = report.facts
    s.rows.update(report.summary)


def _python(ctx: Context, s: Section) -> None:
    facts = _facts(ctx)
    s.rows["pod python"] = ctx.cfg.pod.python
    py = facts.get("python") or {}
    if py:
        s.rows["version"] = py.get("version")
        s.rows["venv"] = py.get("prefix") if py.get("in_venv") else "no (system python)"
        for name, version in (py.get("packages") or {}).items():
            s.rows[name] = version or "not installed"
    torch = facts.get("torch") or {}
    if torch.get("version"):
        s.rows["torch"] = f"{torch['version']} (CUDA {torch.get('cuda') or 'none: CPU build'})"
        s.rows["cuda available"] = torch.get("cuda_available")
        s.rows["arch list"] = " ".join(torch.get("arch_list") or []) or "none"
    elif torch.get("error"):
        s.rows["torch"] = f"import fails: {torch['error']}"
    sage = facts.get("sage") or {}
    if sage.get("version") or sage.get("error"):
        s.rows["sageattention"] = sage.get("version") or "not installed"
        if sage.get("compiled_modules") is not None:
            s.rows["sage compiled modules"] = ", ".join(sage["compiled_modules"]) or "none (Triton kernels)"
        if sage.get("error"):
            s.rows["sage import"] = sage["error"]
    if facts.get("probe_error"):
        s.missing.append(f"could not collect everything from the pod python: {facts['probe_error']}")


def _gpus(ctx: Context, s: Section) -> None:
    fill_gpus(s, _facts(ctx).get("nvml") or {})


def fill_gpus(s: Section, nvml: dict[str, Any]) -> None:
    """The GPUs section from NVML facts (podcheck.facts: local NVML or remote nvidia-smi)."""
    if not nvml.get("available"):
        s.missing.append(f"could not collect GPUs: {nvml.get('error') or 'no GPU facts'}")
        return
    s.rows["source"] = nvml.get("source")
    s.rows["driver"] = nvml.get("driver_version")
    cuda = nvml.get("cuda_driver_version")
    if isinstance(cuda, int):
        s.rows["driver CUDA"] = f"{cuda // 1000}.{cuda % 1000 // 10}"
    for g in nvml.get("gpus") or []:
        cap = g.get("capability")
        parts = [str(g.get("name")), f"sm_{cap[0]}{cap[1]} ({cap[0]}.{cap[1]})" if cap else "capability unknown"]
        if g.get("memory_total"):
            parts.append(f"{mib(g.get('memory_used'))} / {mib(g['memory_total'])} used")
        if g.get("utilization") is not None:
            parts.append(f"{g['utilization']:g} % busy")
        parts.append(str(g.get("uuid")))
        s.rows[f"GPU {g.get('index')}"] = ", ".join(parts)
        procs = g.get("processes") or []
        if procs:
            s.texts[f"GPU {g.get('index')} processes"] = "\n".join(
                f"pid {p.get('pid')}: {mib(p.get('used_memory'))}" for p in procs)


def _toolchain(ctx: Context, s: Section) -> None:
    """The header: one row per tool, from the facts and the ComfyUI section's version (read once)."""
    facts = dict(_facts(ctx))
    comfy = next((x for x in ctx.doc.sections if x.key == "comfyui"), None)
    facts["comfyui_version"] = facts.get("comfyui_version") or (comfy.rows.get("version") if comfy else None)
    s.rows.update(toolchain.rows(facts))


def _facts(ctx: Context) -> dict[str, Any]:
    """The facts the checks gathered; gathered here when no check needed them."""
    if ctx.doc.facts is None:
        ctx.doc.facts = facts.gather(ctx.pod).as_dict()
    return ctx.doc.facts


#: (key, title, collect): cheap parts first, then the checks (which run the probe), then what needs its facts.
PARTS: tuple[tuple[str, str, Callable[[Context, Section], None]], ...] = (
    ("identity", "Pod identity", _identity),
    ("system", "System", _system),
    ("resources", "CPU, memory and cgroup", _resources),
    ("disk", "Disk", _disk),
    ("comfyui", "ComfyUI", _comfyui),
    ("sync", "Sync", _sync),
    ("oom", "OOM events", _oom),
    ("logs", "Logs", _logs),
    ("checks", "Checks", _checks),
    ("python", "Pod python", _python),
    ("gpus", "GPUs", _gpus),
    ("toolchain", "Toolchain", _toolchain),
)


# --- helpers --------------------------------------------------------------------------------------

def row(ctx: Context, s: Section, label: str, *argv: str) -> None:
    ran = ctx.run(*argv)
    if ran.ok and ran.stdout.strip():
        s.rows[label] = first_line(ran.stdout)
    else:
        s.missing.append(f"could not collect {label}: {ran.why()}")


def first_line(text: str) -> str:
    return (text.strip().splitlines() or [""])[0]


def gib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / (1 << 30):.1f} GiB"


def mib(n: int | None) -> str:
    return "unknown" if n is None else f"{n / (1 << 20):.0f} MiB"
