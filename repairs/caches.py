"""Repairs of the caches area: delete kernel caches built for another GPU, only inside the allow-listed
cache roots of podcheck.domain.caches.locations(), never following a symlink out of them.

A file is stale when the GPU fingerprint history says another GPU was current when it was written.
Kernel caches (Triton, Inductor, torch extensions and kernels, CUDA ComputeCache) are deleted file by
file; TensorRT engines live among a user's outputs, so they are moved to quarantine instead.
"""
from __future__ import annotations

import posixpath
import time

from podcheck import facts
from podcheck.domain import caches, users
from podcheck.fix.repair import Context, Outcome, Repair, register

BATCH = 200  # paths per `rm` command


# For each argument: "<in a git tree 0|1>\t<real path>" (or an empty record when it does not exist).
_RESOLVE = r"""
for p do
  r=$(realpath -e -- "$p" 2>/dev/null) || { printf '\0'; continue; }
  g=0; d="$r"
  while :; do [ -e "$d/.git" ] && { g=1; break; }; [ "$d" = / ] && break; d=$(dirname -- "$d"); done
  printf '%s\t%s\0' "$g" "$r"
done
"""


def resolve(ctx: Context, paths: list[str]) -> list[tuple[bool, str] | None]:
    """(in a git tree, real path) of each path on the host, None where it does not exist."""
    ran = ctx.probe("sh", "-c", _RESOLVE, "sh", *paths, timeout=60)
    records = ran.stdout.split("\0")[:len(paths)] if ran.ok else []
    out: list[tuple[bool, str] | None] = []
    for i in range(len(paths)):
        git, _, real = (records[i] if i < len(records) else "").partition("\t")
        out.append((git == "1", real) if real else None)
    return out


def trusted_roots(ctx: Context) -> tuple[list[caches.Location], list[str]]:
    """The cache roots caches.clear may clear, and why each other one is left alone. A root that is a
    symlink is not entered (its target, when allow-listed, is a root itself); one whose real path is
    not a cache (caches.untrusted: a user's folder, the workspace, a checkout) is refused."""
    c = ctx.cfg.pod
    env = caches.host_env(ctx.pod)
    roots = caches.locations(env, c.workspace, c.comfyui_dir, users.users(ctx.pod))
    home = env.get("HOME") or "/root"
    anchors = resolve(ctx, [c.workspace, c.comfyui_dir, home])
    workspace, comfyui_dir, home_real = (a[1] if a else p for a, p in zip(anchors, [c.workspace, c.comfyui_dir, home]))
    keep, refused = [], []
    for root, real in zip(roots, resolve(ctx, [r.path for r in roots])):
        if real is None or ctx.probe("test", "-L", root.path).ok:
            continue
        why = caches.untrusted(root.kind, real[1], workspace=workspace, comfyui_dir=comfyui_dir, home=home_real,
                               git_tree=real[0])
        if why:
            shown = f"{root.source}={root.path}" if root.source not in ("default", "workspace") else root.path
            refused.append(f"{shown} is not a cache: {why}" + (f" (it resolves to {real[1]})" if real[1] != root.path else ""))
            continue
        keep.append(caches.Location(root.kind, real[1], root.source))
    return keep, refused


def stale_files(ctx: Context, history: caches.History,
                roots: list[caches.Location] | None = None) -> list[tuple[caches.Location, str, int]]:
    """(root, path, size) of every file the cache tool wrote (caches.is_cache_file) below a trusted root,
    written for another GPU. `find -P` never follows a symlink inside a root."""
    if roots is None:
        roots = trusted_roots(ctx)[0]
    out = []
    for root in roots:
        ran = ctx.probe("find", "-P", root.path, "-type", "f", "-printf", "%T@ %s %p\\0", timeout=120)
        for item in ran.stdout.split("\0") if ran.ok else []:
            stamp, _, rest = item.partition(" ")
            size, _, path = rest.partition(" ")
            try:
                mtime, nbytes = float(stamp), int(size)
            except ValueError:
                continue
            prefix = root.path.rstrip("/") + "/"
            if path.startswith(prefix) and caches.is_cache_file(root.kind, path[len(prefix):]) \
                    and history.built_elsewhere(mtime):
                out.append((root, path, nbytes))
    return out


@register
class ClearCaches(Repair):
    id = "caches.clear"
    order = 120
    description = "delete kernel caches built for another GPU (allow-listed roots only); move stale TensorRT engines aside"
    blast = "deletes-cache"

    def apply(self, ctx: Context) -> Outcome:
        gpus = facts.read_nvml(ctx.pod).get("gpus") or []
        # note the GPU now: podcheck's own bookkeeping (like its markers), which a dry run leaves unsaved
        history = (_observed(caches.load_history(ctx.pod), gpus) if ctx.dry_run else
                   caches.observe(ctx.pod, gpus, time.time())) if gpus else caches.load_history(ctx.pod)
        if history.current is None:
            return Outcome.skipped("no GPU fingerprint recorded yet: nothing is known to be stale")
        roots, refused = trusted_roots(ctx)
        found = stale_files(ctx, history, roots)
        left = f"; left alone: {'; '.join(refused)}" if refused else ""
        if not found:
            return Outcome.unchanged(f"no cache built for another GPU than {history.current['fingerprint']}{left}")
        deleted = [(r, p, n) for r, p, n in found if r.kind != "tensorrt"]
        for i in range(0, len(deleted), BATCH):
            ran = ctx.run("rm", "-f", "--", *[p for _, p, _ in deleted[i:i + BATCH]], timeout=120)
            if not ran.ok:
                return Outcome.failed(f"cannot delete stale cache files: {ran.why()}")
        moved = []
        for root, path, _ in found:
            if root.kind == "tensorrt":
                where, why = ctx.quarantine(path)
                if where is None:
                    return Outcome.failed(f"cannot move the stale TensorRT engine {path} aside: {why}")
                moved.append(where)
        by_kind: dict[str, int] = {}
        for root, _, nbytes in deleted:
            by_kind[root.kind] = by_kind.get(root.kind, 0) + nbytes
        freed = sum(by_kind.values())
        parts = [f"freed {caches.human(freed)} ({', '.join(f'{caches.LABELS[k]} {caches.human(n)}' for k, n in by_kind.items())})"
                 if deleted else ""]
        if moved:
            parts.append(f"moved {len(moved)} TensorRT engine(s) built on another GPU to "
                         f"{posixpath.dirname(moved[0]).split('/quarantine/')[0]}/quarantine/")
        return Outcome.changed("; ".join(p for p in parts if p) + f" (GPU now {history.current['fingerprint']}){left}")


def _observed(history: caches.History, gpus: list) -> caches.History:
    """The history as `caches.observe` would leave it, without saving it (for a dry run)."""
    copy = caches.History([dict(e) for e in history.entries])
    copy.observe(caches.fingerprint(gpus), time.time())
    return copy
