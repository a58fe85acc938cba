"""GPU-specific caches (where they are, how big, which GPU built them) and the GPU fingerprint history.

Locations follow the tools' own rules (domain facts §6): Triton `TRITON_CACHE_DIR` else
`$TRITON_HOME/.triton/cache` (TRITON_HOME defaults to $HOME); TorchInductor `TORCHINDUCTOR_CACHE_DIR`
else `<tmp>/torchinductor_<user>`; torch extensions `TORCH_EXTENSIONS_DIR` else
`$XDG_CACHE_HOME/torch_extensions`; torch's kernel cache `PYTORCH_KERNEL_CACHE_PATH` else
`$XDG_CACHE_HOME/torch/kernels`; CUDA `CUDA_CACHE_PATH` else `$HOME/.nv/ComputeCache`; the same
layouts inside the workspace; TensorRT engines under `<output>/tensorrt/` and `models/tensorrt/`.
`locations()` is also the allow-list of roots that the `caches.clear` repair may empty.

The history (state document `gpu-history`) lists each GPU fingerprint ("NAME:MAJOR.MINOR", several
GPUs joined by "; ") with when it was first and last seen; a cache file is attributed to the GPU
that was current at its mtime, so "built for another GPU" needs no sidecar files. The legacy
`{workspace}/.last_gpu_info` ("NAME:CC") seeds an empty history.

>>> fingerprint([{"name": "NVIDIA GeForce RTX 4090", "capability": [8, 9]}])
'NVIDIA GeForce RTX 4090:8.9'
>>> parse_legacy("NVIDIA GeForce RTX 5090:120\\n")
'NVIDIA GeForce RTX 5090:12.0'
"""
from __future__ import annotations

import posixpath
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from podcheck.domain.users import invalid_reason, users
from podcheck.host.state import State

LABELS = {"triton": "Triton", "inductor": "TorchInductor", "torch_extensions": "torch extensions",
          "torch_kernels": "torch kernels", "cuda": "CUDA ComputeCache", "tensorrt": "TensorRT engines"}
HISTORY = "gpu-history"
HISTORY_KEEP = 50
LEGACY = ".last_gpu_info"
#: `stat -f -c %T` names of filesystems that live on another machine.
NETWORK_FS = ("nfs", "cifs", "smb", "fuse", "ceph", "gluster", "9p", "lustre", "gpfs", "afs", "coda", "beegfs", "ncp")


@dataclass(frozen=True)
class Location:
    kind: str    # a key of LABELS
    path: str
    source: str  # the variable that set it, "default", or "workspace"

    def describe(self) -> str:
        via = f" ({self.source})" if self.source not in ("default", "workspace") else ""
        return f"{LABELS[self.kind]} {self.path}{via}"


def host_env(pod: Any) -> dict[str, str]:
    """The host's environment as commands on it see it (for a local pod: podcheck's own)."""
    ran = pod.run("env", "-0")
    return dict(item.split("=", 1) for item in ran.stdout.split("\0") if "=" in item) if ran.ok else {}


def _user(env: dict[str, str], home: str) -> str:
    for key in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        if env.get(key):
            return env[key]
    return posixpath.basename(home.rstrip("/")) or "root"


def effective(env: dict[str, str]) -> list[Location]:
    """The caches the pod's processes use with this environment."""
    home = env.get("HOME") or "/root"
    xdg = env.get("XDG_CACHE_HOME") or f"{home}/.cache"
    user = re.sub(r'[\\/:*?"<>|]', "_", _user(env, home))  # as torch sanitises getpass.getuser()

    def loc(kind: str, var: str, default: str) -> Location:
        return Location(kind, env[var], var) if env.get(var) else Location(kind, default, "default")

    return [
        loc("triton", "TRITON_CACHE_DIR", f"{env.get('TRITON_HOME') or home}/.triton/cache"),
        loc("inductor", "TORCHINDUCTOR_CACHE_DIR", f"{env.get('TMPDIR') or '/tmp'}/torchinductor_{user}"),
        loc("torch_extensions", "TORCH_EXTENSIONS_DIR", f"{xdg}/torch_extensions"),
        loc("torch_kernels", "PYTORCH_KERNEL_CACHE_PATH", f"{xdg}/torch/kernels"),
        loc("cuda", "CUDA_CACHE_PATH", f"{home}/.nv/ComputeCache"),
    ]


def locations(env: dict[str, str], workspace: str, comfyui_dir: str, users: list[str]) -> list[Location]:
    """Every GPU-specific cache root: in use, the same layouts in the workspace, TensorRT folders."""
    out = effective(env)
    for kind, rel in (("triton", ".triton/cache"), ("torch_extensions", ".cache/torch_extensions"),
                      ("torch_kernels", ".cache/torch/kernels"), ("cuda", ".nv/ComputeCache")):
        out.append(Location(kind, f"{workspace}/{rel}", "workspace"))
    out += [Location("tensorrt", f"{comfyui_dir}/output/tensorrt", "default"),
            Location("tensorrt", f"{comfyui_dir}/models/tensorrt", "default")]
    out += [Location("tensorrt", f"{workspace}/output/{u}/tensorrt", "workspace")
            for u in users if not invalid_reason(u)]
    seen: set[str] = set()
    unique = []
    for item in out:
        key = posixpath.normpath(item.path)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


@dataclass
class Found:
    """What one cache root holds: files and bytes, and how much of it is stale."""

    location: Location
    files: int = 0
    bytes: int = 0
    stale_files: int = 0
    stale_bytes: int = 0
    newest: float = 0.0
    paths: list[tuple[str, float, int]] = field(default_factory=list)  # (path, mtime, size), TensorRT only


def measure(pod: Any, where: list[Location], stale: Callable[[float], bool] = lambda t: False,
            timeout: float = 60.0) -> list[Found]:
    """Sizes of the roots that exist (one `find` for all; a root that is a symlink is followed, nothing below)."""
    if not where:
        return []
    by_root = {loc.path: Found(loc) for loc in where}
    ran = pod.run("find", "-H", *by_root, "-type", "f", "-printf", "%s %T@ %H\\t%p\\n", timeout=timeout)
    for line in ran.stdout.splitlines():
        head, _, path = line.partition("\t")
        parts = head.split(" ", 2)
        if len(parts) != 3 or parts[2] not in by_root:
            continue
        try:
            size, mtime = int(parts[0]), float(parts[1])
        except ValueError:
            continue
        found = by_root[parts[2]]
        found.files += 1
        found.bytes += size
        found.newest = max(found.newest, mtime)
        if stale(mtime):
            found.stale_files += 1
            found.stale_bytes += size
        if found.location.kind == "tensorrt":
            found.paths.append((path, mtime, size))
    return [f for f in by_root.values() if f.files]


def human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


# --- GPU fingerprint and its history ---------------------------------------------------------------

def fingerprint(gpus: list[dict[str, Any]]) -> str:
    """'NAME:MAJOR.MINOR' per GPU, sorted and joined by '; '."""
    parts = []
    for g in gpus:
        cap = g.get("capability") or ["?", "?"]
        parts.append(f"{' '.join(str(g.get('name') or 'unknown').split())}:{cap[0]}.{cap[1]}")
    return "; ".join(sorted(parts))


def parse_legacy(text: str) -> str | None:
    """The legacy `.last_gpu_info` "NAME:CC" (CC as 8.9, 89 or 120) as a fingerprint, or None."""
    name, sep, cc = text.strip().rpartition(":")
    name = " ".join(name.split())
    if not sep or not name:
        return None
    cc = cc.strip()
    m = re.fullmatch(r"(\d+)\.(\d+)", cc) or re.fullmatch(r"(\d+)(\d)", cc)
    return f"{name}:{int(m.group(1))}.{int(m.group(2))}" if m else None


@dataclass
class History:
    """Fingerprints in the order they were seen: [{"fingerprint", "first_seen", "last_seen"}, ...]."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    @property
    def current(self) -> dict[str, Any] | None:
        return self.entries[-1] if self.entries else None

    @property
    def previous(self) -> dict[str, Any] | None:
        return self.entries[-2] if len(self.entries) > 1 else None

    def observe(self, fp: str, now: float) -> bool:
        """Note that `fp` is the GPU now; True when that is a change."""
        if self.current and self.current["fingerprint"] == fp:
            self.current["last_seen"] = now
            return False
        self.entries.append({"fingerprint": fp, "first_seen": now, "last_seen": now})
        del self.entries[:-HISTORY_KEEP]
        return len(self.entries) > 1

    def fingerprint_at(self, t: float) -> str | None:
        """The GPU that was current at time t (before the first entry: the first one)."""
        found = self.entries[0]["fingerprint"] if self.entries else None
        for entry in self.entries:
            if entry["first_seen"] <= t:
                found = entry["fingerprint"]
        return found

    def built_elsewhere(self, t: float) -> bool:
        """A file written at time t was built for another GPU than the current one."""
        return bool(self.current) and self.fingerprint_at(t) != self.current["fingerprint"]


def load_history(pod: Any) -> History:
    """The history from state, or one seeded from the legacy {workspace}/.last_gpu_info."""

    doc = State(pod).read(HISTORY)
    if isinstance(doc, dict) and isinstance(doc.get("entries"), list):
        return History([e for e in doc["entries"] if isinstance(e, dict) and "fingerprint" in e])
    legacy_path = f"{pod.config.pod.workspace}/{LEGACY}"
    text = pod.read_text(legacy_path)
    legacy = parse_legacy(text) if text else None
    if not legacy:
        return History()
    ran = pod.run("stat", "-c", "%Y", legacy_path)
    seen = float(ran.stdout.strip()) if ran.ok and ran.stdout.strip().isdigit() else 0.0
    return History([{"fingerprint": legacy, "first_seen": 0.0, "last_seen": seen, "source": LEGACY}])


def observe(pod: Any, gpus: list[dict[str, Any]], now: float) -> History:
    """Load the history, note the current GPU, save it; idempotent within a run."""

    history = load_history(pod)
    history.observe(fingerprint(gpus), now)
    State(pod).write(HISTORY, {"entries": history.entries})
    return history


def _when(t: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(t)) if t else "an unknown time"


def judge_gpu_change(pod: Any, gpus: list[dict[str, Any]], env: dict[str, str], now: float) -> tuple[bool, str]:
    """(ok, message) for caches.gpu_unchanged: no cache built for a previous GPU is left."""

    history = observe(pod, gpus, now)
    current = history.current["fingerprint"]
    if history.previous is None:
        return True, f"GPU {current} (fingerprint recorded {_when(history.current['first_seen'])})"
    c = pod.config.pod
    found = measure(pod, locations(env, c.workspace, c.comfyui_dir, users(pod)), history.built_elsewhere)
    stale = [f for f in found if f.stale_files]
    changed = f"the GPU changed from {history.previous['fingerprint']} to {current} ({_when(history.current['first_seen'])})"
    if not stale:
        return True, f"{changed}; no cache built for another GPU is left"
    listed = ", ".join(f"{f.location.describe()} {human(f.stale_bytes)} in {f.stale_files} files" for f in stale)
    return False, (f"{changed}; caches built for another GPU are still there: {listed}. Kernels compiled for the old "
                   "GPU fail or crash on the new one (e.g. 'undefined symbol: cuModuleGetFunction' from a Triton "
                   "cuda_utils.so); clear them")


def judge_tensorrt(pod: Any, gpus: list[dict[str, Any]], env: dict[str, str], now: float) -> tuple[str, str]:
    """('passed'|'failed'|'skipped', message) for caches.tensorrt: no engine was built on another GPU."""

    c = pod.config.pod
    roots = [loc for loc in locations(env, c.workspace, c.comfyui_dir, users(pod)) if loc.kind == "tensorrt"]
    history = observe(pod, gpus, now)
    found = measure(pod, roots, history.built_elsewhere)
    engines = [(path, mtime) for f in found for path, mtime, _ in f.paths if path.endswith(".engine")]
    if not engines:
        return "skipped", "no TensorRT engines (" + ", ".join(loc.path for loc in roots[:3]) + ")"
    current = history.current["fingerprint"]
    stale = [(path, history.fingerprint_at(mtime)) for path, mtime in engines if history.built_elsewhere(mtime)]
    if not stale:
        return "passed", f"{len(engines)} TensorRT engine(s), none older than the last GPU change ({current})"
    listed = "; ".join(f"{path} (built on {gpu})" for path, gpu in stale[:8]) + (
        f"; and {len(stale) - 8} more" if len(stale) > 8 else "")
    return "failed", (f"{len(stale)} TensorRT engine(s) were built on another GPU than this {current}: {listed}. "
                      "TensorRT refuses them ('expecting compute X got compute Y'); rebuild them on this GPU")


# --- caches.local ------------------------------------------------------------------------------

_FS_INFO = """
for p; do
  r=$(readlink -m -- "$p"); q="$r"
  while [ ! -e "$q" ]; do q=$(dirname -- "$q"); done
  printf '%s\\t%s\\t%s\\n' "$p" "$r" "$(stat -f -c %T -- "$q")"
done
"""


def is_network_fs(fstype: str) -> bool:
    return any(fstype.lower().startswith(name) for name in NETWORK_FS)


def fs_info(pod: Any, paths: list[str]) -> dict[str, tuple[str, str]]:
    """path -> (its real path, links followed, `readlink -m`; the type of the filesystem it is or would be on)."""
    ran = pod.run("sh", "-c", _FS_INFO, "sh", *paths)
    out = {}
    for line in ran.stdout.splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            out[parts[0]] = (parts[1], parts[2])
    return out


def not_local(pod: Any, env: dict[str, str]) -> tuple[list[str], list[str]]:
    """(problems, descriptions) for the Triton and TorchInductor caches the pod's processes use."""
    workspace = pod.config.pod.workspace
    used = [loc for loc in effective(env) if loc.kind in ("triton", "inductor")]
    info = fs_info(pod, [workspace] + [loc.path for loc in used])
    ws_real = posixpath.normpath(info.get(workspace, (workspace, ""))[0])
    problems, seen = [], []
    for loc in used:
        real, fstype = info.get(loc.path, (loc.path, "unknown"))
        real = posixpath.normpath(real)
        shown = loc.describe() + (f" -> {real}" if real != posixpath.normpath(loc.path) else "")
        seen.append(f"{shown} on {fstype}")
        var = {"triton": "TRITON_CACHE_DIR", "inductor": "TORCHINDUCTOR_CACHE_DIR"}[loc.kind]
        fix = f"point {var} at local disk (e.g. /root/.cache/{loc.kind}) when launching ComfyUI"
        if real == ws_real or real.startswith(ws_real.rstrip("/") + "/"):
            problems.append(f"{shown} is on the shared volume {workspace}: pods with different GPUs share it and "
                            f"its files go stale; {fix}")
        elif is_network_fs(fstype):
            problems.append(f"{shown} is on a network filesystem ({fstype}): stale file handles and slow "
                            f"compiles; {fix}")
    return problems, seen
