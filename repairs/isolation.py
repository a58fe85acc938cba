"""Repairs of the isolation area: each person's files in their own folders on the shared volume.

Nothing is deleted: a symlink is removed as a link (`rm` on the link, never through it), and a real
folder or file in the way is moved to `{state_dir}/quarantine/<timestamp>/` with everything in it.
"""
from __future__ import annotations

import posixpath
from typing import Any

from podcheck.domain import users
from podcheck.fix.repair import Context, Outcome, Repair, register
from podcheck.host import paths

#: Of those, ComfyUI's own shared defaults that per-user --output/--input-directory replace: a real folder
#: with files there is moved to quarantine when the links are removed.
REPLACED = ("output", "input")


@register
class Unlink(Repair):
    id = "isolation.unlink"
    description = "remove ComfyUI's shared output/input/workflows symlinks (as links); move a shared real folder to quarantine"
    blast = "safe"

    def _todo(self, ctx: Context) -> tuple[list[Any], list[Any]]:
        root, ws = ctx.cfg.pod.comfyui_dir, ctx.cfg.pod.workspace
        entries = paths.inspect(ctx.pod, [ws] + [f"{root}/{name}" for name in users.SHARED_LINKS])
        real_ws = entries[posixpath.normpath(ws)].resolved
        links = [e for name in users.SHARED_LINKS if (e := entries[posixpath.normpath(f"{root}/{name}")]).is_link
                 and users.owner(e.resolved, real_ws)]
        folders = [e for name in REPLACED if (e := entries[posixpath.normpath(f"{root}/{name}")]).kind == "dir"
                   and ctx.probe("find", e.path, "-mindepth", "1", "-print", "-quit").stdout.strip()]
        return links, folders

    def commands(self, ctx: Context) -> list[list[str]]:
        links, folders = self._todo(ctx)
        stamp = f"{ctx.cfg.pod.state_dir}/quarantine/<timestamp>"
        return [["rm", "--", e.path] for e in links] + [["mv", "-T", e.path, f"{stamp}{e.path}"] for e in folders]

    def apply(self, ctx: Context) -> Outcome:
        links, folders = self._todo(ctx)
        if not links:
            return Outcome.unchanged("no symlink from ComfyUI's folders into a user's folder")
        done = []
        for e in links:
            ran = ctx.run("rm", "--", e.path)  # no trailing slash: the link goes, never what it points to
            if not ran.ok:
                return Outcome.failed(f"cannot remove the symlink {e.path}: {ran.why()}")
            done.append(f"removed the symlink {e.path} -> {e.resolved} (its target is untouched)")
        for e in folders:
            count = len(ctx.probe("find", e.path, "-mindepth", "1").stdout.splitlines())
            where, why = ctx.quarantine(e.path)
            if where is None:
                return Outcome.failed("; ".join(done + [f"cannot move the shared folder {e.path} aside: {why}"]))
            done.append(f"moved the shared folder {e.path} ({count} entries) to {where}")
            _restore_tracked(ctx, e.path)
        return Outcome.changed("; ".join(done))


def _restore_tracked(ctx: Context, path: str) -> None:
    """Put back what git tracks in a folder moved out of a ComfyUI checkout, so the checkout stays clean."""
    root = ctx.cfg.pod.comfyui_dir
    if ctx.probe("test", "-d", f"{root}/.git").ok:
        rel = posixpath.relpath(path, root)
        if ctx.probe("git", "-C", root, "ls-files", "--", rel).stdout.strip():
            ctx.run("git", "-C", root, "checkout", "--", rel, timeout=60)


@register
class UserDirs(Repair):
    id = "isolation.user_dirs"
    description = "create each user's output, input, workflows and temp folders; replace bad links by real folders"
    blast = "safe"

    def _plan(self, ctx: Context) -> tuple[list[str], list[tuple[str, str, Any]]]:
        cfg = ctx.cfg.pod
        names = list(dict.fromkeys(users.users(ctx.pod) + ([cfg.user] if cfg.user else [])))
        invalid = [f"{name!r} {why}" for name in names if (why := users.invalid_reason(name))]
        wanted = [(name, kind, f"{cfg.workspace}/{kind}/{name}") for name in names
                  if not users.invalid_reason(name) for kind in users.PER_USER]
        entries = paths.inspect(ctx.pod, [cfg.workspace] + [p for _, _, p in wanted])
        real_ws = entries[posixpath.normpath(cfg.workspace)].resolved
        todo = []
        for name, kind, path in wanted:
            e = entries[posixpath.normpath(path)]
            if e.kind == "missing":
                todo.append(("create", path, e))
            elif e.kind == "link":
                where = users.owner(e.resolved, real_ws)
                if not paths.inside(e.resolved, real_ws) or (where and where != (kind, name)) or e.resolved_kind != "dir":
                    todo.append(("relink", path, e))
            elif e.kind != "dir":
                todo.append(("move", path, e))
        return invalid, todo

    def commands(self, ctx: Context) -> list[list[str]]:
        _, todo = self._plan(ctx)
        out = [["rm", "--", path] for what, path, _ in todo if what == "relink"]
        out += [["mv", "-T", path, f"{ctx.cfg.pod.state_dir}/quarantine/<timestamp>{path}"] for what, path, _ in todo
                if what == "move"]
        return out + ([["mkdir", "-p", *[path for _, path, _ in todo]]] if todo else [])

    def apply(self, ctx: Context) -> Outcome:
        invalid, todo = self._plan(ctx)
        done = []
        for what, path, e in todo:
            if what == "relink":
                ran = ctx.run("rm", "--", path)
                if not ran.ok:
                    return Outcome.failed(f"cannot remove the symlink {path}: {ran.why()}")
                done.append(f"replaced the symlink {path} -> {e.resolved} by a real folder (its target is untouched)")
            elif what == "move":
                where, why = ctx.quarantine(path)
                if where is None:
                    return Outcome.failed(f"a {e.kind} is in the way at {path} and cannot be moved: {why}")
                done.append(f"moved the {e.kind} at {path} to {where}")
        created = [path for what, path, _ in todo]
        if created:
            ran = ctx.run("mkdir", "-p", "--", *created)
            if not ran.ok:
                return Outcome.failed(f"cannot create {', '.join(created)}: {ran.why()}")
            done.append(f"created {len([w for w, _, _ in todo if w == 'create'])} folder(s)"
                        if any(w == "create" for w, _, _ in todo) else "")
        done = [d for d in done if d]
        if invalid:
            return Outcome.failed("user names that cannot have folders (rename them by hand): " + "; ".join(invalid)
                                  + (f"; {'; '.join(done)}" if done else ""))
        return Outcome.changed("; ".join(done)) if done else Outcome.unchanged("every user has their folders")
