"""Facts about a pod, gathered once per run: the probe (pod python) and NVML (or nvidia-smi).

The probe's failures are facts too: `Facts.probe_error` says "probe timed out after 60 s",
"pod python not found: /workspace/venv/bin/python", "pod python died by signal 11 (SIGSEGV)
during import torch", and the checks that need the probe fail with it.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import signal as signals
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from podcheck.domain import gpu
from podcheck.host.pod import KILL_GRACE
from podcheck.host.state import State

MARK = "@@podcheck@@ "
PROBE_SOURCE = Path(__file__).with_name("probe.py")
PROBE_TEXT = PROBE_SOURCE.read_text()  # read once: every probe command (early, adopted, watch rounds) sends it
PROBE_HASH = hashlib.sha256(PROBE_TEXT.encode()).hexdigest()[:16]


@dataclass
class Facts:
    """Everything the checks judge that needs more than one command: probe sections and NVML."""

    python: dict[str, Any] = field(default_factory=dict)
    torch: dict[str, Any] = field(default_factory=dict)
    sage: dict[str, Any] = field(default_factory=dict)
    requirements: dict[str, Any] = field(default_factory=dict)
    torchset: dict[str, Any] = field(default_factory=dict)
    install: dict[str, Any] = field(default_factory=dict)  # the install fingerprint; reused: torchset, requirements kept
    probe_error: str | None = None
    nvml: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def broken(cls, why: str) -> "Facts":
        return cls(probe_error=why, nvml={"available": False, "error": why, "gpus": []})

    @property
    def gpus(self) -> list[dict[str, Any]]:
        return list(self.nvml.get("gpus") or [])

    @property
    def driver_cuda(self) -> tuple[int, int] | None:
        value = self.nvml.get("cuda_driver_version")
        return gpu.cuda_from_driver_int(value) if isinstance(value, int) else None

    def as_dict(self) -> dict[str, Any]:
        return {"python": self.python, "torch": self.torch, "sage": self.sage, "requirements": self.requirements,
                "torchset": self.torchset, "install": self.install, "probe_error": self.probe_error, "nvml": self.nvml}


class ProbeCache:
    """Probe facts kept between the runs of a long-running mode (watch, serve), per host.

    The probe imports torch and runs a matmul on every GPU: once per `ttl` seconds is plenty for
    facts that change only with an install, and keeps watch from loading a busy GPU every round.
    NVML (utilisation, free memory) is read afresh on every run. A failed probe is not kept.
    """

    def __init__(self, ttl: float):
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Facts]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> Facts | None:
        with self._lock:
            entry = self._entries.get(key)
        if entry is None or time.monotonic() - entry[0] > self.ttl:
            return None
        cached = entry[1]
        return Facts(python=cached.python, torch=cached.torch, sage=cached.sage, requirements=cached.requirements,
                     torchset=cached.torchset, install=cached.install)

    def put(self, key: str, facts: Facts) -> None:
        if facts.probe_error is None:
            with self._lock:
                self._entries[key] = (time.monotonic(), facts)


def gather(pod, cache: ProbeCache | None = None) -> Facts:
    """Run the probe (or take it from `cache`) and read NVML at the same time."""
    box: dict[str, Any] = {}
    nvml_thread = threading.Thread(target=lambda: box.update(nvml=read_nvml(pod)), daemon=True)
    nvml_thread.start()
    key = pod.name
    facts = cache.get(key) if cache else None
    if facts is None:
        facts = run_probe(pod)
        if cache:
            cache.put(key, facts)
    nvml_thread.join(pod.config.pod.command_timeout + 10)
    facts.nvml = box.get("nvml") or {"available": False, "error": "NVML did not answer in time", "gpus": []}
    return facts


class Gathering:
    """One pod's facts, gathered once in a background thread from the first ask, so the probe
    overlaps the checks that do not need it."""

    def __init__(self, pod, cache: ProbeCache | None = None):
        self.pod, self.cache = pod, cache
        self.facts: Facts | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None and self.facts is None:
            def work() -> None:
                try:
                    self.facts = gather(self.pod, self.cache)
                except Exception as exc:  # noqa: BLE001 - a bug must read as one, not as a probe timeout
                    self.facts = Facts.broken(f"facts gathering failed: {type(exc).__name__}: {exc}")

            self._thread = threading.Thread(target=work, name="podcheck-facts", daemon=True)
            self._thread.start()

    def get(self) -> Facts:
        """The facts; blocks until gathered, or a broken Facts past the probe's deadline."""
        self.start()
        limit = self.pod.config.pod.probe_timeout
        if self.facts is None and self._thread is not None:
            self._thread.join(limit + 2 * KILL_GRACE + 15)
        if self.facts is None:
            return Facts.broken(f"facts gathering did not finish within {limit:g} s")
        return self.facts


def probe_args(config) -> dict[str, Any]:
    return {
        "gpu": config.pod.gpu != "absent",
        "sage": config.attention.sage != "off",
        "requirements": f"{config.pod.comfyui_dir}/requirements.txt",
        "torchset": True,
    }


def probe_command(config, args: dict[str, Any]) -> list[str]:
    """The pod python running probe.py with `args`, as argv."""
    return [config.pod.python, "-c", PROBE_TEXT, json.dumps(args)]


# --- install facts kept between runs -------------------------------------------------------------
# torchset and requirements import torchvision, torchaudio and every module ComfyUI imports: seconds
# more than `import torch`, for facts that change only with an install. The probe fingerprints what
# they depend on (probe.install_fingerprint, which includes the pod's host name: every new pod judges
# afresh); while the fingerprint holds, a run on the same pod takes them from {state_dir}, written once.

REUSABLE = ("torchset", "requirements")
KEEP_S = 24 * 3600  # judged afresh at least daily, whatever the fingerprint says


def kept_name(config, host: str) -> str:
    """The state document of one pod's kept install facts (pods share state_dir: one per host and python)."""
    return "probe-install-" + hashlib.sha256(f"{host}\0{config.pod.python}".encode()).hexdigest()[:16]


def reusable(doc: Any, base: dict[str, Any]) -> dict[str, Any] | None:
    """The kept document when it was made by this probe with these arguments, and is young enough."""
    if not isinstance(doc, dict) or doc.get("probe") != PROBE_HASH or doc.get("args") != base:
        return None
    if not isinstance(doc.get("written"), (int, float)) or not 0 <= time.time() - doc["written"] < KEEP_S:
        return None
    return doc if isinstance(doc.get("fingerprint"), str) else None


def with_reuse(base: dict[str, Any], kept: dict[str, Any] | None) -> dict[str, Any]:
    return {**base, "reuse": kept["fingerprint"]} if kept else base


def local_probe_args(config) -> dict[str, Any]:
    """The probe's arguments for the local pod (podcheck.cli.boot starts it before the Pod exists)."""
    base = probe_args(config)
    try:
        doc = json.loads((Path(config.pod.state_dir) / f"{kept_name(config, socket.gethostname())}.json").read_text())
    except (OSError, ValueError):
        doc = None
    return with_reuse(base, reusable(doc, base))


def run_probe(pod, args: dict[str, Any] | None = None) -> Facts:
    """Run the probe in the pod python: `args` as probe.py takes them (default: probe_args(config),
    reusing the install facts this pod kept)."""
    config = pod.config
    if args is not None:
        return _probe(pod, args)
    base = probe_args(config)
    state, name = State(pod), kept_name(config, socket.gethostname() if pod.is_local else pod.name)
    kept = reusable(state.read(name), base)
    facts = _probe(pod, with_reuse(base, kept))
    if facts.probe_error is None and facts.install.get("reused") and kept:
        for section in REUSABLE:
            if section != "torchset" or "error" not in facts.torch:  # as the probe runs it: only on a torch
                setattr(facts, section, kept.get(section) or {})
    elif facts.probe_error is None and facts.install.get("fingerprint") and pod.is_dir(posixpath.dirname(state.root.rstrip("/"))):
        # (only beside what is there: a check run never makes a missing workspace, the unattached volume's mount point)
        try:
            state.write(name, {"fingerprint": facts.install["fingerprint"], "probe": PROBE_HASH, "args": base,
                               "written": time.time(), **{s: getattr(facts, s) for s in REUSABLE}})
        except OSError:
            pass  # only a later run's time is lost
    return facts


def _probe(pod, args: dict[str, Any]) -> Facts:
    config = pod.config
    python = config.pod.python
    timeout = config.pod.probe_timeout
    ran = pod.run(*probe_command(config, args), timeout=timeout)
    facts, stage = parse_probe_output(ran.stdout)
    rejected, facts.probe_error = facts.probe_error, None
    if ran.ok and stage == "done":
        return facts
    where = f" during {stage}" if stage and stage != "done" else ""
    if ran.timed_out:
        facts.probe_error = f"probe timed out after {timeout:g} s{where}"
    elif ran.rc in (126, 127) and not facts.python:
        facts.probe_error = f"pod python not found: {python}" if ran.rc == 127 else f"pod python not executable: {python}"
    elif ran.signal:
        facts.probe_error = f"pod python died by signal {ran.signal} ({_signal_name(ran.signal)}){where}"
    elif ran.rc != 0:
        tail = (ran.stderr.strip().splitlines() or ["no output"])[-1][:300]
        facts.probe_error = f"pod python exited {ran.rc}{where}: {tail}"
    else:
        facts.probe_error = "probe printed no facts (output was not podcheck JSON)"
    if rejected:
        facts.probe_error += f"; it printed {rejected.removeprefix('probe printed ')}"
    return facts


#: A probe line longer than this is not read: the real probe's longest section is a few KiB, and
#: a flooding interpreter must not cost minutes of parsing and redaction.
MAX_LINE = 256 * 1024
SECTIONS = ("python", "torch", "sage", "requirements", "torchset", "install")


def parse_probe_output(stdout: str) -> tuple[Facts, str | None]:
    """Collect the sections the probe printed; return them with the last stage it reached.

    A marked line that is too long, not JSON or not a JSON object is skipped, and the first such
    line is named in `Facts.probe_error` when the probe gave nothing usable."""
    facts, stage, rejected = Facts(), None, None
    for line in stdout.splitlines():
        if not line.startswith(MARK):
            continue
        if len(line) > MAX_LINE:
            rejected = rejected or f"a marked line of {len(line) / 2**20:.1f} MiB (limit {MAX_LINE // 1024} KiB)"
            continue
        try:
            obj = json.loads(line[len(MARK):])
        except ValueError:
            rejected = rejected or "a marked line that is not JSON"
            continue
        if not isinstance(obj, dict):
            rejected = rejected or f"a marked line that is a JSON {type(obj).__name__}, not an object"
        elif "stage" in obj:
            stage = obj["stage"] if isinstance(obj["stage"], str) else None
        elif obj.get("section") in SECTIONS:
            data = obj.get("data")
            setattr(facts, obj["section"], data if isinstance(data, dict) else {})
    if rejected:
        facts.probe_error = f"probe printed {rejected}"
    return facts, stage


def _signal_name(number: int) -> str:
    try:
        return signals.Signals(number).name
    except ValueError:
        return "unknown"


# --- NVML ---------------------------------------------------------------------------------------

def read_nvml(pod) -> dict[str, Any]:
    """GPU facts: NVML in this process for the local host, `nvidia-smi` for a remote one."""
    if pod.is_local:
        return _nvml_local()
    return _nvml_remote(pod)


def _nvml_local() -> dict[str, Any]:
    try:
        import pynvml
    except ImportError as exc:  # pragma: no cover - a declared dependency
        return {"available": False, "error": f"nvidia-ml-py is not installed ({exc})", "gpus": []}
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return {"available": False, "error": f"NVML: {exc}", "gpus": []}
    try:
        out: dict[str, Any] = {"available": True, "source": "nvml",
                               "driver_version": pynvml.nvmlSystemGetDriverVersion(),
                               "cuda_driver_version": pynvml.nvmlSystemGetCudaDriverVersion(), "gpus": []}
        for i in range(pynvml.nvmlDeviceGetCount()):
            h = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(h)
            entry: dict[str, Any] = {
                "index": i,
                "name": pynvml.nvmlDeviceGetName(h),
                "uuid": pynvml.nvmlDeviceGetUUID(h),
                "capability": list(pynvml.nvmlDeviceGetCudaComputeCapability(h)),
                "memory_total": int(mem.total), "memory_free": int(mem.free), "memory_used": int(mem.used),
            }
            entry["utilization"] = _maybe(lambda h=h: float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu))
            entry["processes"] = _maybe(lambda h=h: [
                {"pid": p.pid, "used_memory": p.usedGpuMemory}
                for p in pynvml.nvmlDeviceGetComputeRunningProcesses(h)
            ]) or []
            out["gpus"].append(entry)
        return out
    except pynvml.NVMLError as exc:
        return {"available": False, "error": f"NVML: {exc}", "gpus": []}
    finally:
        try:
            pynvml.nvmlShutdown()
        except pynvml.NVMLError:
            pass


def _maybe(fn):
    try:
        return fn()
    except Exception:
        return None


SMI_FIELDS = "index,name,uuid,compute_cap,memory.total,memory.free,memory.used,utilization.gpu,driver_version"


def _nvml_remote(pod) -> dict[str, Any]:
    ran = pod.run("nvidia-smi", f"--query-gpu={SMI_FIELDS}", "--format=csv,noheader,nounits")
    if not ran.ok:
        return {"available": False, "error": f"nvidia-smi: {ran.why()}", "gpus": []}
    header = pod.run("nvidia-smi")
    return parse_nvidia_smi(ran.stdout, header.stdout if header.ok else "")


def parse_nvidia_smi(query_csv: str, plain: str = "") -> dict[str, Any]:
    """Facts from `nvidia-smi --query-gpu=SMI_FIELDS --format=csv,noheader,nounits` (+ its banner)."""
    import re

    mib = 1024 * 1024
    gpus, driver = [], None
    for line in query_csv.strip().splitlines():
        cols = [c.strip() for c in line.split(",")]
        if len(cols) < 9:
            continue
        cap = parse_float_pair(cols[3])
        gpus.append({
            "index": int(cols[0]), "name": cols[1], "uuid": cols[2], "capability": cap,
            "memory_total": _num(cols[4], mib), "memory_free": _num(cols[5], mib), "memory_used": _num(cols[6], mib),
            "utilization": _num(cols[7], 1, float), "processes": [],
        })
        driver = cols[8]
    m = re.search(r"CUDA Version:\s*(\d+)\.(\d+)", plain)
    cuda = int(m.group(1)) * 1000 + int(m.group(2)) * 10 if m else None
    return {"available": bool(gpus), "source": "nvidia-smi", "driver_version": driver,
            "cuda_driver_version": cuda, "gpus": gpus, **({} if gpus else {"error": "nvidia-smi lists no GPU"})}


def parse_float_pair(text: str) -> list[int] | None:
    parts = text.split(".")
    return [int(parts[0]), int(parts[1])] if len(parts) == 2 and all(p.isdigit() for p in parts) else None


def _num(text: str, scale: int, cast=int):
    try:
        return cast(float(text) * scale)
    except ValueError:
        return None
