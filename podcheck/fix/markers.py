"""Install markers: per repair, the fingerprint of the inputs it last ran with, in `{state_dir}/markers.json`.

A marker only remembers inputs (the torch spec and index, the sha256 of ComfyUI's requirements.txt,
its commit); a changed fingerprint makes a repair due although its checks pass. A marker never
skips a check. The seeds' markers (`{workspace}/.install_markers/<name>`, `DONE_X=1` lines in
`state.env`) are read as hints: migrated once into markers without a fingerprint (so the next
`--fix` verifies them by running the repair) and shown by `podcheck status`.

>>> fingerprint({"a": 1, "b": 2}) == fingerprint({"b": 2, "a": 1})
True
"""
from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from podcheck import __version__
from podcheck.host.state import State

NAME = "markers"


def fingerprint(inputs: dict[str, Any]) -> str:
    """sha256 of the inputs, independent of key order."""
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def shown(inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs as stored and printed: credentials in URLs removed."""
    def clean(value: Any) -> Any:
        if isinstance(value, str) and "://" in value and "@" in value:
            parts = urlsplit(value)
            host = parts.netloc.rsplit("@", 1)[-1]
            return urlunsplit(parts._replace(netloc=host))
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value
    return {k: clean(v) for k, v in inputs.items()}


@dataclass
class Marker:
    id: str
    fingerprint: str | None  # None: no inputs, or unknown ones (a legacy hint: the repair is due once)
    inputs: dict[str, Any] = field(default_factory=dict)
    changed_at: float | None = None  # when the repair last changed something
    verified_at: float | None = None  # when it last ran successfully
    podcheck: str = __version__
    source: str = "podcheck"  # or "legacy: <file>" for a migrated hint not verified yet
    hint: str | None = None  # the legacy marker this one was migrated from, kept after verification

    def changes(self, inputs: dict[str, Any]) -> list[str]:
        """The input names whose value differs from the recorded ones."""
        if self.fingerprint is None:
            return []
        now = shown(inputs)
        return sorted(k for k in set(now) | set(self.inputs) if now.get(k) != self.inputs.get(k)) or ["inputs"]


class Markers:
    """The markers of one pod (read and written through the pod, atomically)."""

    def __init__(self, pod: Any):
        self.pod = pod
        self.state = State(pod)

    @property
    def path(self) -> str:
        return self.state.path(NAME)

    def load(self) -> dict[str, Marker]:
        data = self.state.read(NAME)
        out: dict[str, Marker] = {}
        if isinstance(data, dict):
            for rid, raw in data.items():
                try:
                    out[rid] = Marker(**{**raw, "id": rid})
                except TypeError:
                    continue  # a marker from another version: forget it (the repair runs once more)
        return out

    def save_all(self, markers: dict[str, Marker]) -> None:
        self.state.write(NAME, {rid: {k: v for k, v in asdict(m).items() if k != "id"}
                                for rid, m in sorted(markers.items())})

    def record(self, rid: str, inputs: dict[str, Any] | None, changed: bool) -> Marker:
        """Remember that `rid` ran successfully with `inputs` (and whether it changed anything)."""
        markers = self.load()
        old = markers.get(rid)
        now = time.time()
        marker = Marker(
            id=rid, fingerprint=fingerprint(inputs) if inputs is not None else None,
            inputs=shown(inputs or {}), verified_at=now,
            changed_at=now if changed else (old.changed_at if old else None),
            hint=old.hint if old and old.hint else (old.source if old and old.source != "podcheck" else None))
        markers[rid] = marker
        self.save_all(markers)
        return marker

    def forget(self, ids: list[str] | None = None) -> list[str]:
        """Drop the markers of `ids` (all when None); returns the ids forgotten."""
        markers = self.load()
        gone = sorted(markers) if not ids else [i for i in ids if i in markers]
        if gone:
            self.save_all({k: v for k, v in markers.items() if k not in gone})
        return gone

    # --- the seeds' markers ---------------------------------------------------------------------

    def migrate_legacy(self, known: list[str]) -> list[Marker]:
        """Turn legacy hints into markers without fingerprint, for repairs that have no marker yet."""
        markers = self.load()
        added = []
        for rid, source, when in legacy_hints(self.pod, known):
            if rid in markers:
                continue
            markers[rid] = Marker(id=rid, fingerprint=None, changed_at=when, source=f"legacy: {source}")
            added.append(markers[rid])
        if added:
            self.save_all(markers)
        return added


#: A legacy name (lower case, `_`/`-`/space separated) -> repair id; the first keyword that matches wins.
LEGACY_KEYWORDS = (("sage", "sage"), ("ffmpeg", "ffmpeg"), ("torch", "torch"), ("venv", "venv"),
                   ("conda", "venv"), ("comfyui", "comfyui"), ("requirements", "comfyui"))


def legacy_repair(name: str, known: list[str]) -> str | None:
    """The repair a legacy marker name stands for: 'DONE_COMFYUI_REQUIREMENTS' -> 'comfyui'."""
    words = name.lower()
    if any(w in words for w in ("manager", "custom_node", "custom-node", "gguf", "node")):
        return None  # custom nodes are not podcheck's to install
    for keyword, rid in LEGACY_KEYWORDS:
        if keyword in words and rid in known:
            return rid
    return None


_STATE_LINE = re.compile(r"^\s*(?:export\s+)?DONE_([A-Za-z0-9_]+)\s*=\s*[\"']?1[\"']?\s*$")


def legacy_hints(pod: Any, known: list[str]) -> list[tuple[str, str, float | None]]:
    """(repair id, source, when) from `[fix] legacy_markers` files and `[fix] legacy_state_env` lines."""
    fix = pod.config.fix
    hints: list[tuple[str, str, float | None]] = []
    listing = pod.run("find", fix.legacy_markers, "-mindepth", "1", "-maxdepth", "1", "-type", "f",
                      "-printf", "%f\\t%T@\\n")
    if listing.ok:
        for line in sorted(listing.stdout.splitlines()):
            name, _, stamp = line.partition("\t")
            rid = legacy_repair(name, known)
            if rid:
                hints.append((rid, f"{fix.legacy_markers}/{name}", _float(stamp)))
    text = pod.read_text(fix.legacy_state_env)
    for line in (text or "").splitlines():
        m = _STATE_LINE.match(line)
        rid = legacy_repair(m.group(1), known) if m else None
        if rid:
            hints.append((rid, f"{fix.legacy_state_env}: DONE_{m.group(1)}=1", None))
    return hints


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
