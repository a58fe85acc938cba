"""The memory cgroup of the pod's processes: limit, usage, page cache and OOM kills, v1 or v2.

Inside a container, psutil and /proc/meminfo show the host; the OOM killer acts on the cgroup.
v2: `memory.max` ("max" = none), `memory.current`, `memory.stat` (inactive_file), `memory.events`
(oom_kill, counted for the subtree). v1: `memory.limit_in_bytes` (~2**63 = none),
`memory.usage_in_bytes`, `memory.stat` (total_inactive_file), `memory.oom_control` (oom_kill,
this cgroup only). The cgroup is the one `cat /proc/self/cgroup` reports on the host; with a
cgroup namespace that path does not exist under the mount, and the mount's root is the cgroup.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

V1_UNLIMITED = 1 << 62  # v1 reports PAGE_COUNTER_MAX * page size, 9223372036854771712
FILES = ("memory.max", "memory.current", "memory.events", "memory.stat",
         "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.oom_control")

# Print each candidate folder's memory files under "@@dir" / "@@file" headers, then /proc/meminfo.
_DUMP = """
for d; do
  [ -d "$d" ] || continue
  printf '@@dir %s\\n' "$d"
  for f in memory.max memory.current memory.events memory.stat memory.limit_in_bytes memory.usage_in_bytes memory.oom_control; do
    [ -r "$d/$f" ] && { printf '@@file %s\\n' "$f"; cat "$d/$f"; }
  done
done
printf '@@meminfo\\n'; cat /proc/meminfo
"""


@dataclass
class MemCgroup:
    version: int             # 1 or 2
    path: str                # as /proc/self/cgroup names it, e.g. "/process_api/f03e..."
    dir: str                 # where its files were read
    limit: int | None        # None: no limit
    usage: int
    inactive_file: int       # page cache the kernel reclaims before it OOM-kills
    oom_kill: int | None     # OOM kills counted by this cgroup

    @property
    def working_set(self) -> int:
        return max(0, self.usage - self.inactive_file)

    @property
    def available(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.working_set)


def parse_proc_cgroup(text: str) -> tuple[str | None, str | None]:
    """(v1 memory controller path, v2 unified path) from /proc/<pid>/cgroup."""
    v1 = v2 = None
    for line in text.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        if parts[0] == "0" and parts[1] == "":
            v2 = parts[2]
        elif "memory" in parts[1].split(","):
            v1 = parts[2]
    return v1, v2


def parse_keyed(text: str) -> dict[str, int]:
    """'key value' lines (memory.stat, memory.events, memory.oom_control) as a dict."""
    out = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            out[parts[0]] = int(parts[1])
    return out


def from_files(version: int, path: str, where: str, files: dict[str, str]) -> MemCgroup | None:
    """A MemCgroup from the text of its files, or None when the key files are missing."""
    stat = parse_keyed(files.get("memory.stat", ""))
    try:
        if version == 2:
            raw = files["memory.max"].strip()
            limit = None if raw == "max" else int(raw)
            usage = int(files["memory.current"].strip())
            inactive = stat.get("inactive_file", 0)
            oom = parse_keyed(files.get("memory.events", "")).get("oom_kill")
        else:
            limit = int(files["memory.limit_in_bytes"].strip())
            limit = None if limit >= V1_UNLIMITED else limit
            usage = int(files["memory.usage_in_bytes"].strip())
            inactive = stat.get("total_inactive_file", stat.get("inactive_file", 0))
            oom = parse_keyed(files.get("memory.oom_control", "")).get("oom_kill")
    except (KeyError, ValueError):
        return None
    return MemCgroup(version, path, where, limit, usage, inactive, oom)


def parse_dump(text: str) -> tuple[dict[str, dict[str, str]], str]:
    """The output of _DUMP: {dir: {file: text}} and the text of /proc/meminfo."""
    dirs: dict[str, dict[str, str]] = {}
    meminfo: list[str] = []
    current: list[str] | None = None
    for line in text.splitlines():
        if line.startswith("@@dir "):
            files = dirs.setdefault(line[6:], {})
            current = None
        elif line.startswith("@@file "):
            current = []
            files[line[7:]] = current  # type: ignore[assignment]
        elif line == "@@meminfo":
            current = meminfo
        elif current is not None:
            current.append(line)
    return {d: {f: "\n".join(v) for f, v in fs.items()} for d, fs in dirs.items()}, "\n".join(meminfo)


def parse_meminfo(text: str) -> dict[str, int]:
    """/proc/meminfo in bytes: {'MemTotal': ..., 'MemAvailable': ...}."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            out[name] = int(parts[0]) * (1024 if len(parts) > 1 and parts[1] == "kB" else 1)
    return out


def candidates(root: str, v1: str | None, v2: str | None) -> list[tuple[int, str, str]]:
    """(version, cgroup path, folder) to try, most specific first."""
    root = root.rstrip("/") or "/"
    out = []
    if v1 is not None:
        out += [(1, v1, f"{root}/memory{v1.rstrip('/')}"), (1, v1, f"{root}/memory")]
    out += [(2, v2 or "/", f"{root}{(v2 or '').rstrip('/')}"), (2, v2 or "/", root)]
    return out


def read(pod: Any, root: str = "/sys/fs/cgroup") -> tuple[MemCgroup | None, dict[str, int]]:
    """The memory cgroup of commands run on the host (None when none is readable) and /proc/meminfo."""
    own = pod.read_text("/proc/self/cgroup") or ""
    v1, v2 = parse_proc_cgroup(own)
    tries = candidates(root, v1, v2)
    ran = pod.run("sh", "-c", _DUMP, "sh", *dict.fromkeys(d for _, _, d in tries))
    dirs, meminfo = parse_dump(ran.stdout)
    for version, path, where in tries:
        found = from_files(version, path, where, dirs.get(where, {}))
        if found is not None:
            return found, parse_meminfo(meminfo)
    return None, parse_meminfo(meminfo)
