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


def stale_files(ctx: Context, history: caches.History) -> list[tuple[caches.Location, str, int]]:
    """(root, path, size) of every regular file below an allow-listed root written for another GPU.
    `find -P` never follows a symlink: a root that is a link, or a link inside one, is not entered."""
    c = ctx.cfg.pod
    roots = caches.locations(caches.host_env(ctx.pod), c.workspace, c.comfyui_dir, users.users(ctx.pod))
    out = []
    for root in roots:
        if ctx.probe("test", "-L", root.path).ok:
            continue  # a root that is a symlink is never followed (its target, when allow-listed, is a root itself)
        ran = ctx.probe("find", "-P", root.path, "-type", "f", "-printf", "%T@ %s %p\\0", timeout=120)
        for item in ran.stdout.split("\0") if ran.ok else []:
            stamp, _, rest = item.partition(" ")
            size, _, path = rest.partition(" ")
            try:
                mtime, nbytes = float(stamp), int(size)
            except ValueError:
                continue
            if path.startswith(root.path.rstrip("/") + "/") and history.built_elsewhere(mtime):
                out.append((root, path, nbytes))
    return out


@register
class ClearCaches(Repair):
    id = "caches.clear"
    description = "delete kernel caches built for another GPU (allow-listed roots only); move stale TensorRT engines aside"
    blast = "deletes-cache"

    def commands(self, ctx: Context) -> list[list[str]]:
        found = stale_files(ctx, caches.load_history(ctx.pod))
        return [["rm", "-f", "--", path] for root, path, _ in found if root.kind != "tensorrt"] + [
            ["mv", path, f"{ctx.cfg.pod.state_dir}/quarantine/<timestamp>{path}"] for root, path, _ in found
            if root.kind == "tensorrt"]

    def apply(self, ctx: Context) -> Outcome:
        gpus = facts.read_nvml(ctx.pod).get("gpus") or []
        history = caches.observe(ctx.pod, gpus, time.time()) if gpus else caches.load_history(ctx.pod)
        if history.current is None:
            return Outcome.skipped("no GPU fingerprint recorded yet: nothing is known to be stale")
        found = stale_files(ctx, history)
        if not found:
            return Outcome.unchanged(f"no cache built for another GPU than {history.current['fingerprint']}")
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
        return Outcome.changed("; ".join(p for p in parts if p) + f" (GPU now {history.current['fingerprint']})")
