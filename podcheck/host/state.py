"""podcheck's state: small JSON documents in `[pod] state_dir` on the pod's host, written atomically.

>>> State(pod).write("gpu", {"name": "NVIDIA H100", "capability": [9, 0]})
>>> State(pod).read("gpu")["capability"]
[9, 0]
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from podcheck.host.files import write_atomic

# Write through the host: temp file in the same folder, fsync it, then rename over the old one.
_REMOTE_WRITE = 'mkdir -p "$(dirname "$2")" && t="$2.$$.tmp" && printf %s "$1" > "$t" && sync "$t" && mv -f "$t" "$2"'


class State:
    """JSON state of one pod: `read(name)`, `write(name, data)`; name 'gpu' is `<state_dir>/gpu.json`."""

    def __init__(self, pod: Any):
        self.pod = pod
        self.root = pod.config.pod.state_dir

    def path(self, name: str) -> str:
        return str(Path(self.root) / f"{name}.json")

    def read(self, name: str) -> Any | None:
        """The document, or None when it is missing or unreadable (a torn or foreign file)."""
        if self.pod.is_local:
            try:
                text = Path(self.path(name)).read_text()
            except OSError:
                return None
        else:
            text = self.pod.read_text(self.path(name))
            if text is None:
                return None
        try:
            return json.loads(text)
        except ValueError:
            return None

    def write(self, name: str, data: Any) -> None:
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        if self.pod.is_local:
            write_atomic(self.path(name), text)
            return
        ran = self.pod.run("sh", "-c", _REMOTE_WRITE, "sh", text, self.path(name))
        if not ran.ok:
            raise OSError(f"cannot write {self.path(name)} on {self.pod.name}: {ran.why()}")
