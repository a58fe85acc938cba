"""ComfyUI launch lines in start scripts (shell, Dockerfile CMD/ENTRYPOINT) and the flags they lack.

The options after `main.py` are read the way ComfyUI's argparse reads them (podcheck.domain.comfyui:
`--opt=value`, unique prefixes such as `--use-sage`), up to the first shell operator.

>>> launches("cd /ComfyUI\\npython main.py --listen \\\\\\n  --port 8188\\n")
[(2, 'python main.py --listen --port 8188')]
>>> missing_flags("python main.py --use-sage --port 8188 2>&1 | tee log", ["--use-sage-attention", "--output-directory"])
['--output-directory']
"""
from __future__ import annotations

import json
import re
import shlex
from typing import Any

from podcheck.domain import comfyui

_LAUNCH = re.compile(r"""(?:^|[\s/"'=\[,])main\.py(?:$|[\s"',\]])|\bcomfy\b.*\blaunch\b""")
_NOT_A_LAUNCH = re.compile(r"^\s*(?:#|echo\b|printf\b|:\s)")
_EXEC_FORM = re.compile(r"^\s*(?:CMD|ENTRYPOINT|RUN)\s+(\[.*\])\s*$")
_SHELL_OPERATOR = re.compile(r"^(?:\d*[<>]|&|\||;|\(|\))")
SAGE_FLAG = "--use-sage-attention"


def required_flags(config: Any) -> list[str]:
    """The flags every ComfyUI launch needs under this config: sage when required, the per-user
    folders when the pod serves named users, and `[image] required_flags`."""
    flags: list[str] = []
    if config.attention.sage == "required":
        flags.append(SAGE_FLAG)
    if config.pod.user or config.pod.users:
        flags.extend(flag for flag, _ in comfyui.USER_FOLDERS)
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
    """The lines of a script that start ComfyUI (`python main.py ...`, `comfy launch ...`, `CMD [...]`)."""
    return [(n, line) for n, line in logical_lines(text) if _LAUNCH.search(line) and not _NOT_A_LAUNCH.match(line)]


def options(line: str) -> list[str] | None:
    """The tokens ComfyUI receives from a launch line, or None when the line cannot be split."""
    exec_form = _EXEC_FORM.match(line)
    try:
        tokens = json.loads(exec_form.group(1)) if exec_form else shlex.split(line, comments=True)
    except ValueError:
        return None
    if not all(isinstance(t, str) for t in tokens):
        return None
    if "launch" in tokens and "main.py" not in [t.rsplit("/", 1)[-1] for t in tokens]:  # comfy launch -- ARGS
        tokens = tokens[tokens.index("--") + 1:] if "--" in tokens else []
    else:
        at = next((i for i, t in enumerate(tokens) if t.rsplit("/", 1)[-1] == "main.py"), None)
        tokens = tokens[at + 1:] if at is not None else []
    cut = next((i for i, t in enumerate(tokens) if _SHELL_OPERATOR.match(t)), len(tokens))
    return tokens[:cut]


def missing_flags(line: str, required: list[str]) -> list[str]:
    """The required flags ComfyUI would not get from this line (as its argparse reads them)."""
    tokens = options(line)
    args = comfyui.parse_args(tokens or [])
    # A line that cannot be split, or a flag ComfyUI does not define (a fork's): look for it written in full.
    literal = tokens is None
    return [f for f in required if not (args.has(f) if f in comfyui.FLAGS and not literal else _written(line, f))]


def _written(line: str, flag: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", line) is not None
