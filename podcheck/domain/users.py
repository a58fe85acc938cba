"""The people on a shared volume: their names (validated before any path is built) and folders.

>>> invalid_reason("alice") is None
True
>>> invalid_reason("../evil")
"contains '/'"
"""
from __future__ import annotations

import posixpath
import re
from typing import Any

from podcheck.host import paths

NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")
SHELL_META = set(";&|<>$`\\\"'*?[]{}()!#~^%=,")

#: The per-user folders under the workspace: {workspace}/<kind>/<user>. `user` is ComfyUI's
#: --user-directory: settings, workflows (user/<user>/default/workflows) and its database.
KINDS = ("output", "input", "workflows", "user")
#: The same, with the temp trees ComfyUI's --temp-directory points into.
PER_USER = KINDS + ("temp",)
#: Folders of the ComfyUI install that pods once pointed at one user's folder with a symlink.
SHARED_LINKS = ("output", "input", "user/workflows", "user/default/workflows")


def invalid_reason(name: str) -> str | None:
    """Why `name` cannot be a user folder name, or None when it can."""
    if not name:
        return "is empty"
    if "/" in name or "\\" in name:
        return "contains '/'"
    if ".." in name or name in (".",):
        return "contains '..'"
    if name.startswith("-"):
        return "starts with '-'"
    if any(ch.isspace() for ch in name):
        return "contains whitespace"
    meta = sorted(set(name) & SHELL_META)
    if meta:
        return f"contains shell metacharacters {''.join(meta)!r}"
    if not NAME.match(name):
        return "is not letters, digits, '.', '_' and '-' (at most 64)"
    return None


def require_valid(name: str) -> str:
    """`name`, or ValueError saying why it may not touch a path."""
    why = invalid_reason(name)
    if why:
        raise ValueError(f"invalid user name {name!r}: {why}")
    return name


def users(pod: Any) -> list[str]:
    """`[pod] users` (else the folders and links under {workspace}/output), plus `[pod] user`.

    Names are not validated here: check them with invalid_reason() before they touch a path."""
    names = list(pod.config.pod.users)
    if not names:
        root = f"{pod.config.pod.workspace}/output"
        ran = pod.run("find", root, "-mindepth", "1", "-maxdepth", "1", "(", "-type", "d", "-o", "-type", "l", ")",
                      "-printf", "%f\\0")
        names = [n for n in ran.stdout.split("\0") if n and not n.startswith(".")] if ran.ok else []
    current = pod.config.pod.user
    if current and current not in names:
        names.append(current)
    return sorted(names)


def owner(resolved: str, real_workspace: str) -> tuple[str, str | None] | None:
    """(kind, user) when `resolved` is in {workspace}/<kind>/<user>, (kind, None) for {workspace}/<kind>
    itself, None elsewhere. Give both paths with their symlinks followed."""
    for kind in PER_USER:
        root = posixpath.join(real_workspace, kind)
        if paths.inside(resolved, root):
            rest = resolved[len(root):].strip("/")
            return kind, rest.split("/", 1)[0] if rest else None
    return None


def user_dir(pod: Any, kind: str, user: str) -> str:
    """{workspace}/<kind>/<user> for a valid user name."""
    return f"{pod.config.pod.workspace}/{kind}/{require_valid(user)}"
