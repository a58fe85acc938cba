"""podcheck's state: small JSON documents in `[pod] state_dir` on the pod's host, written atomically.

>>> State(pod).write("gpu", {"name": "NVIDIA H100", "capability": [9, 0]})
>>> State(pod).read("gpu")["capability"]
[9, 0]
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from podcheck.host import shell
from podcheck.host.files import refuse_links, write_atomic
from podcheck.reports.redact import Redactor

#: Set (to anything) while a run must change nothing: `--fix --dry-run` sets it for its check run.
READ_ONLY_ENV = "PODCHECK_READ_ONLY"

# Write through the host: temp file in the same folder, fsync it, then rename over the old one
# (never through a link: a planted one is refused, and -T renames over a link, not into its target).



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

    def write(self, name: str, data: Any, redact: bool = False) -> None:
        """Write the document unless it holds this already, or the run is read-only ($PODCHECK_READ_ONLY).
        A symlink at its place, or in a folder of state_dir, raises LinkRefused (an OSError).
        `redact`: a record for people (last-fix, markers, background), on a volume others read: its
        secrets are removed as in every output (the loop's settings and resume data stay exact)."""
        if redact:
            data = Redactor.for_config(self.pod.config).data(data)
        text = json.dumps(data, indent=2, sort_keys=True) + "\n"
        if os.environ.get(READ_ONLY_ENV):
            return
        if self.pod.is_local:
            path = self.path(name)
            refuse_links(path, self.root)
            try:
                if Path(path).read_text() == text:
                    return  # an unchanged document is not rewritten
            except (OSError, UnicodeDecodeError):
                pass
            write_atomic(path, text, links=False)
            return
        if self.pod.read_text(self.path(name)) == text:
            return
        ran = shell.write(self.pod.run, self.path(name), text, refuse_link=True)
        if not ran.ok:
            raise OSError(f"cannot write {self.path(name)} on {self.pod.name}: {ran.why()}")
