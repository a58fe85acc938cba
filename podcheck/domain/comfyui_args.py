"""ComfyUI's command line read the way its argparse reads it: the options it knows (FLAGS, or the
pod's own comfy/cli_args.py), unique prefixes, optional values, and where main.py sits in a python
command line.

>>> parse_args(["--use-sage", "--listen", "--port=8190"]).given
{'--use-sage-attention': [], '--listen': [], '--port': ['8190']}
>>> script_index(["python", "-u", "main.py", "--cpu"])
2
"""
from __future__ import annotations

import posixpath
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

DEFAULT_PORT = 8188
DEFAULT_LISTEN = "127.0.0.1"

#: Every option of ComfyUI's comfy/cli_args.py (v0.3.x through 2026). Only their names matter here:
#: argparse accepts any unique prefix of one. The pod's own cli_args.py, when readable, decides instead.
FLAGS = frozenset("""
--listen --port --tls-keyfile --tls-certfile --enable-cors-header --max-upload-size --base-directory
--extra-model-paths-config --output-directory --date-based-output --date-output-format --temp-directory
--input-directory --models-directory --user-directory --auto-launch --disable-auto-launch --cuda-device
--default-device --cuda-malloc --disable-cuda-malloc --force-fp32 --force-fp16 --fp32-unet --fp64-unet
--bf16-unet --fp16-unet --fp8_e4m3fn-unet --fp8_e5m2-unet --fp8_e8m0fnu-unet --fp16-vae --fp32-vae
--bf16-vae --cpu-vae --fp8_e4m3fn-text-enc --fp8_e5m2-text-enc --fp16-text-enc --fp32-text-enc
--bf16-text-enc --fp16-intermediates --force-channels-last --directml --oneapi-device-selector
--disable-ipex-optimize --supports-fp8-compute --enable-triton-backend --disable-triton-backend
--preview-method --preview-size --cache-ram --cache-classic --cache-lru --cache-none --high-ram
--use-split-cross-attention --use-quad-cross-attention --use-pytorch-cross-attention --use-sage-attention
--use-flash-attention --use-ck-attention --disable-xformers --force-upcast-attention --dont-upcast-attention
--enable-manager --disable-manager-ui --enable-manager-legacy-ui --gpu-only --highvram --normalvram
--lowvram --novram --cpu --reserve-vram --vram-headroom --disable-nvml-pressure --async-offload
--disable-async-offload --disable-dynamic-vram --enable-dynamic-vram --fast-disk --disable-fast-disk
--disable-cuda-graphs --disable-comfy-compiler --assert-graph-breaks --force-non-blocking
--default-hashing-function --disable-smart-memory --deterministic --fast --debug-hang
--disable-pinned-memory --mmap-torch-files --disable-mmap --dont-print-server --quick-test-for-ci
--windows-standalone-build --disable-metadata --disable-all-custom-nodes --whitelist-custom-nodes
--disabled-nodes-config --disable-partner-nodes --offline --disable-api-nodes --multi-user --verbose
--log-stdout --front-end-version --front-end-root --enable-compress-response-body --comfy-api-base
--database-url --disable-assets --enable-assets --enable-asset-hashing --feature-flag --list-feature-flags
""".split())

#: Options ComfyUI's argparse takes more than once, keeping every use (action="append"): a relaunch
#: must give each use back, not the last one alone.
APPEND = frozenset({"--extra-model-paths-config", "--feature-flag", "--verbose"})

#: Options whose value may be left out (argparse nargs="?"), with the value they take then.
CONST = {"--listen": "0.0.0.0,::", "--enable-cors-header": "*", "--directml": "-1", "--async-offload": "2",
         "--verbose": "DEBUG"}

#: ComfyUI's mutually exclusive attention options and the line it logs at start for each.
ATTENTION = {
    "--use-sage-attention": "Using sage attention",
    "--use-flash-attention": "Using Flash Attention",
    "--use-pytorch-cross-attention": "Using pytorch attention",
    "--use-split-cross-attention": "Using split optimization for attention",
    "--use-quad-cross-attention": "Using sub quadratic optimization for attention",
    "--use-ck-attention": "Using Comfy Kitchen attention",
}

_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
_ADD_ARGUMENT = re.compile(r"""add_argument\(\s*["'](--[A-Za-z0-9][\w-]*)["']""")
_PYTHON = re.compile(r"^python(\d+(\.\d+)*)?$")


# --- the command line --------------------------------------------------------------------------

@dataclass(frozen=True)
class Args:
    """ComfyUI's options as its argparse reads them: `given` maps each option's full name to the values
    of its last use (of every use, for APPEND options) (an empty list: given without a value); `problems`
    are what argparse would refuse."""

    given: dict[str, list[str]] = field(default_factory=dict)
    problems: tuple[str, ...] = ()

    def has(self, flag: str) -> bool:
        return flag in self.given

    def get(self, flag: str, default: str | None = None) -> str | None:
        """The value of a one-value option (its const when given bare, like `--listen`), or `default`."""
        if flag not in self.given:
            return default
        values = self.given[flag]
        return values[-1] if values else CONST.get(flag, default)

    @property
    def port(self) -> int:
        try:
            return int(self.get("--port") or DEFAULT_PORT)
        except ValueError:
            return DEFAULT_PORT

    @property
    def listen(self) -> str:
        return self.get("--listen") or DEFAULT_LISTEN

    @property
    def attention(self) -> str | None:
        """The attention option given (`--use-sage-attention`...), or None for ComfyUI's default."""
        return next((f for f in ATTENTION if f in self.given), None)

    @property
    def use_sage_attention(self) -> bool:
        return "--use-sage-attention" in self.given


def flag_names(cli_args_source: str | None) -> frozenset[str]:
    """The options a ComfyUI version defines, read from its comfy/cli_args.py (empty when unreadable)."""
    return frozenset(_ADD_ARGUMENT.findall(cli_args_source or ""))


def parse_args(tokens: Sequence[str], names: frozenset[str] | None = None) -> Args:
    """Read ComfyUI options like argparse: `--opt value`, `--opt=value`, unique prefixes (`--use-sage`),
    optional values (`--listen` alone). ComfyUI takes no positional arguments, so every plain token
    belongs to the option before it."""
    names = names or FLAGS
    given: dict[str, list[str]] = {}
    problems: list[str] = []
    current: str | None = None
    for token in tokens:
        if token == "--":
            problems.append("'--' ends the options (ComfyUI takes no positional arguments)")
            break
        if not _is_option(token):
            if current is None:
                problems.append(f"unrecognized argument {token!r}")
            else:
                given[current].append(token)
            continue
        name, eq, value = token.partition("=")
        flag, problem = _full_name(name, names)
        if problem:
            problems.append(problem)
            current = None
            continue
        if flag in APPEND and flag in given:  # every use counts: their values are joined
            given[flag] = given.pop(flag) + ([value] if eq else [])
        else:
            given.pop(flag, None)  # keep insertion order = order of last use
            given[flag] = [value] if eq else []
        current = None if eq else flag
    return Args(given, tuple(problems))


def _is_option(token: str) -> bool:
    return token.startswith("-") and token != "-" and not _NEGATIVE_NUMBER.match(token)


def _full_name(name: str, names: frozenset[str]) -> tuple[str, str | None]:
    if name in names:
        return name, None
    if name.startswith("--"):
        matches = sorted(n for n in names if n.startswith(name))
        if len(matches) == 1:
            return matches[0], None
        if matches:
            return "", f"ambiguous option {name} could match {', '.join(matches)}"
    return "", f"unrecognized option {name}"


def script_index(argv: Sequence[str]) -> int | None:
    """Where the script is in a python command line (`python -u main.py --cpu` -> 2), or None
    when argv is not python running a script (`python -m ...`, `python -c ...`, not python)."""
    if not argv or not _PYTHON.match(posixpath.basename(argv[0])):
        return None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            return i + 1 if i + 1 < len(argv) else None
        if arg == "-" or arg in ("--help", "--version"):
            return None
        if arg.startswith("--"):
            i += 2 if arg == "--check-hash-based-pycs" else 1
            continue
        if arg.startswith("-"):
            letters = arg[1:]
            for j, letter in enumerate(letters):
                if letter in "cm":
                    return None
                if letter in "WX":  # takes a value: the rest of this token, or the next one
                    i += 1 if j == len(letters) - 1 else 0
                    break
            i += 1
            continue
        return i
    return None
