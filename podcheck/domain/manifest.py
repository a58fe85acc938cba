"""Build manifests: which files an image was built from, as relative path -> sha256, per source.

`podcheck manifest ui scripts/start.sh -o manifest.json` records them at build time;
`image.source_fresh` compares the files in the image with the manifest (or with the checkout).

>>> sorted(load_text('{"schema": "podcheck-manifest/1", "sources": {"ui": {"a.html": "00"}}}')["ui"])
['a.html']
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SCHEMA = "podcheck-manifest/1"
#: Never part of what an image is built from: VCS metadata and Python bytecode.
SKIPPED_DIRS = {".git", ".hg", ".svn", "__pycache__"}
SKIPPED_SUFFIXES = (".pyc", ".pyo")
#: A single-file source is recorded under this relative path.
ITSELF = "."
CHUNK = 200  # paths per sha256sum command on the image
_SUM_LINE = re.compile(r"^\\?([0-9a-f]{64}) [ *](.*)$")


class ManifestError(Exception):
    """A manifest or source that cannot be read: one line naming it."""


def source_key(source: str) -> str:
    """The name a source has in a manifest: its path as given, normalised ('./ui/' -> 'ui')."""
    return Path(os.path.normpath(source)).as_posix()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def hash_source(path: Path) -> dict[str, str]:
    """relative posix path -> sha256 for every file under `path` ({'.': sha} for a file)."""
    if path.is_file():
        return {ITSELF: sha256_file(path)}
    if not path.is_dir():
        raise ManifestError(f"source {path}: no such file or directory")
    files: dict[str, str] = {}
    for folder, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS)
        for name in sorted(names):
            full = Path(folder, name)
            if name.endswith(SKIPPED_SUFFIXES) or not full.is_file():  # broken links, sockets...
                continue
            files[full.relative_to(path).as_posix()] = sha256_file(full)
    return files


def build(sources: list[str], base: Path | None = None) -> dict[str, Any]:
    """The manifest document for these sources (relative ones are read from `base`, default: cwd)."""
    return {
        "schema": SCHEMA,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "sources": {source_key(s): hash_source(base / s if base else Path(s)) for s in sources},
    }


def load_text(text: str, where: str = "manifest") -> dict[str, dict[str, str]]:
    """source key -> files of a manifest's text."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ManifestError(f"{where}: not JSON ({exc})") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA or not isinstance(data.get("sources"), dict):
        raise ManifestError(f"{where}: not a podcheck manifest (schema {SCHEMA}); write one with `podcheck manifest`")
    return data["sources"]


def load(path: Path) -> dict[str, dict[str, str]]:
    try:
        return load_text(path.read_text(), str(path))
    except OSError as exc:
        raise ManifestError(f"manifest {path}: {exc.strerror or exc}") from None


def image_hashes(pod: Any, root: str, relpaths: list[str]) -> dict[str, str]:
    """relative path -> sha256 of the files that exist under `root` on the pod's host (through the pod)."""
    paths = {(root if rel == ITSELF else f"{root.rstrip('/')}/{rel}"): rel for rel in relpaths}
    found: dict[str, str] = {}
    names = list(paths)
    for start in range(0, len(names), CHUNK):
        ran = pod.run("sha256sum", "--", *names[start:start + CHUNK], timeout=max(30.0, pod.config.pod.command_timeout))
        if ran.timed_out or ran.not_found:
            raise ManifestError(f"cannot hash the image's files: {ran.why()}")
        for line in ran.stdout.splitlines():  # missing files are only on stderr
            m = _SUM_LINE.match(line)
            if m and m.group(2) in paths:
                found[paths[m.group(2)]] = m.group(1)
    return found


def differences(expected: dict[str, str], actual: dict[str, str]) -> tuple[list[str], list[str]]:
    """(changed, missing) relative paths, sorted."""
    changed = sorted(p for p, digest in expected.items() if p in actual and actual[p] != digest)
    missing = sorted(p for p in expected if p not in actual)
    return changed, missing
