"""The report bundle: the report and the raw logs it quoted, redacted, in one .tar.gz."""
from __future__ import annotations

import io
import os
import tarfile
import time

from podcheck.reports.redact import Redactor

from podcheck.host.files import write_atomic

ROOT = "podcheck-report"


def write(path: str | os.PathLike, members: dict[str, str], redactor: Redactor) -> None:
    """Write `members` (name inside the bundle -> text), each redacted, as `path` (atomically)."""
    buffer = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in members.items():
            data = redactor.text(text).encode()
            info = tarfile.TarInfo(f"{ROOT}/{name}")
            info.size, info.mtime, info.mode = len(data), now, 0o644
            tar.addfile(info, io.BytesIO(data))
    write_atomic(path, buffer.getvalue())
