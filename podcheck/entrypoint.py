"""ComfyUI launch lines in start scripts (shell, Dockerfile CMD/ENTRYPOINT) and the flags they lack.

>>> launches("cd /ComfyUI\\npython main.py --listen \\\\\\n  --port 8188\\n")
[(2, 'python main.py --listen --port 8188')]
>>> missing_flags("python main.py --use-sage-attention=1", ["--use-sage-attention", "--output-directory"])
['--output-directory']
"""
from __future__ import annotations

import re
from typing import Any

_LAUNCH = re.compile(r"""(?:^|[\s/"'=\[,])main\.py(?:$|[\s"',\]])|\bcomfy\b.*\blaunch\b""")
_NOT_A_LAUNCH = re.compile(r"^\s*(?:#|echo\b|printf\b|:\s)")

#: ComfyUI's per-user folder flags (comfy/cli_args.py); see the catalogue's comfyui.launch_flags.
PER_USER_FLAGS = ("--output-directory", "--input-directory", "--temp-directory")
SAGE_FLAG = "--use-sage-attention"


def required_flags(config: Any) -> list[str]:
    """The flags every ComfyUI launch needs under this config."""
    flags: list[str] = []
    if config.attention.sage == "required":
        flags.append(SAGE_FLAG)
    if config.pod.user or config.pod.users:
        flags.extend(PER_USER_FLAGS)
    flags.extend(f for f in config.image.required_flags if f not in flags)
    return flags


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first physical line number, text) with backslash continuations joined."""
    out: list[tuple[int, str]] = []
    start, parts = 0, []
    for number, line in enumerate(text.splitlines(), 1):
        if not parts:
            start = number
        stripped = line.rstrip()
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(line.strip())
        out.append((start, " ".join(p for p in parts if p)))
        parts = []
    if parts:
        out.append((start, " ".join(p for p in parts if p)))
    return out


def launches(text: str) -> list[tuple[int, str]]:
    """The lines of a script that start ComfyUI (`python main.py ...`, `comfy launch ...`)."""
    return [(n, line) for n, line in logical_lines(text) if _LAUNCH.search(line) and not _NOT_A_LAUNCH.match(line)]


def has_flag(line: str, flag: str) -> bool:
    """`flag` written in full on the line, alone or as `flag=value`, in any quoting."""
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", line) is not None


def missing_flags(line: str, required: list[str]) -> list[str]:
    return [flag for flag in required if not has_flag(line, flag)]
