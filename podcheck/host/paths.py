"""What paths on the pod are (folder, file, symlink and where it leads), asked in one command for many.

>>> entries = inspect(pod, ["/workspace/ComfyUI/output", "/workspace/output/alice"])
>>> entries["/workspace/ComfyUI/output"].kind, entries["/workspace/ComfyUI/output"].resolved
('link', '/workspace/output/alice')
"""
from __future__ import annotations

import os
import posixpath
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

#: Plain ASCII messages: a missing path's complaint then needs no encoding detection (testinfra runs a
#: command to detect it the first time a command prints non-ASCII, ~0.1 s).
PLAIN = {"LC_ALL": "C"}
# find's %y letters; anything else (socket, fifo, device) is "other"
KINDS = {"d": "dir", "f": "file", "l": "link"}


@dataclass(frozen=True)
class Entry:
    """One path: `kind` dir | file | link | other | missing; for a link, its `target` as written;
    `resolved` is the path with every symlink followed (readlink -m), and `resolved_kind` what is there."""

    path: str
    kind: str
    target: str | None
    resolved: str
    resolved_kind: str

    @property
    def is_link(self) -> bool:
        return self.kind == "link"


def inside(path: str, root: str) -> bool:
    """`path` is `root` or below it (both absolute; compared lexically, after normalising)."""
    path, root = posixpath.normpath(path), posixpath.normpath(root)
    return path == root or path.startswith(root.rstrip("/") + "/")


def resolve(pod: Any, paths: Sequence[str]) -> list[str]:
    """Each path with every symlink followed, like `readlink -m` (missing parts are kept as written)."""
    if not paths:
        return []
    if pod.is_local:
        return [os.path.realpath(p) for p in paths]
    ran = pod.run("readlink", "-m", "-z", "--", *paths)
    out = ran.stdout.split("\0")[:len(paths)] if ran.ok else []
    return out if len(out) == len(paths) else [posixpath.normpath(p) for p in paths]


def inspect(pod: Any, paths: Iterable[str]) -> dict[str, Entry]:
    """An Entry for each absolute path, from two commands however many paths there are."""
    paths = list(dict.fromkeys(posixpath.normpath(p) for p in paths))
    if not paths:
        return {}
    # %y: the path's own type, %Y: the type behind its symlinks (N = nothing there), %l: the link text
    asked = [p if p.startswith("/") else "./" + p for p in paths]  # never read as a find option
    ran = pod.run("find", *asked, "-maxdepth", "0", "-printf", "%p\\0%y\\0%Y\\0%l\\0", env=PLAIN)
    fields = ran.stdout.split("\0")
    seen = {fields[i]: fields[i + 1:i + 4] for i in range(0, len(fields) - 3, 4)}
    out = {}
    for path, query, real in zip(paths, asked, resolve(pod, paths)):
        own, behind, target = seen.get(query, ("", "", ""))
        kind = KINDS.get(own, "other") if own else "missing"
        out[path] = Entry(path, kind, target if kind == "link" else None, real,
                          KINDS.get(behind, "missing" if behind in ("N", "L", "") else "other"))
    return out
