"""Writing files so that a crash never leaves half of one: temp file, fsync, rename; and writing in
podcheck's own folders (state_dir, logs) without following a link someone else planted there."""
from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path


def umask_mode() -> int:
    """The mode a plain `open(path, "w")` would give a new file: 0666 less the umask. For outputs that
    people and tools read (reports, JUnit, JSON, the Prometheus textfile)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    current = os.umask(0o022)  # no /proc: read it the old way (and put it back at once)
    os.umask(current)
    return 0o666 & ~current


class LinkRefused(OSError):
    """A path podcheck writes in its own folder is a symlink (or not a regular file) it did not make."""

    def __init__(self, path: str | os.PathLike, what: str = "a symlink"):
        super().__init__(errno.ELOOP, f"refusing to write {path}: it is {what} podcheck did not make "
                                      "(remove it, then run again)")

    def __str__(self) -> str:
        return self.strerror


def refuse_links(path: str | os.PathLike, root: str | os.PathLike | None = None) -> None:
    """LinkRefused when `path`, or a folder between `root` and it, is a symlink (missing parts are fine)."""
    path = Path(os.path.abspath(path))
    parts = [path]
    if root is not None:
        top = Path(os.path.abspath(root))
        parts = [p for p in [path, *path.parents] if p != top and top in p.parents]
    for part in parts:
        try:
            st = os.lstat(part)
        except FileNotFoundError:
            continue
        if stat.S_ISLNK(st.st_mode):
            raise LinkRefused(part)
        if part == path and not stat.S_ISREG(st.st_mode):
            raise LinkRefused(part, "not a regular file")


def append_text(path: str | os.PathLike, text: str, mode: int = 0o644) -> None:
    """Append to a log podcheck owns; a symlink in its place is refused (O_NOFOLLOW), not written through."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise LinkRefused(path) from None
        raise
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise LinkRefused(path, "not a regular file")
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, text: str | bytes, mode: int | None = None, *,
                 links: bool = True) -> None:
    """Replace `path` with `text` in one step; readers see the old or the new file, never a mix.

    With `links` (outputs the user names: `-o`, `--json`), a symlink is written through (its target
    is replaced, the link stays) and a target that is not a regular file (`--json /dev/null`, a FIFO)
    is written in place, never renamed over. Without (podcheck's own state), a symlink or a
    non-regular file at `path` is refused (LinkRefused); the rename replaces a link planted later,
    never its target.
    """
    if not links:
        refuse_links(path)
    path = Path(os.path.realpath(path)) if links else Path(os.path.abspath(path))
    data = text.encode() if isinstance(text, str) else text
    try:
        special = not stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        special = False
    if special:
        with open(path, "wb") as fh:
            fh.write(data)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)
