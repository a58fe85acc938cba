r"""Training launch scripts (FluxGym's train.sh, kohya sd-scripts command lines): find the launch
command, read its flags, and set `--resume` as a proper argument of it, keeping the rest verbatim.

>>> text = 'accelerate launch \\\n  sd-scripts/flux_train_network.py \\\n  --save_state \\\n  --loss_type l2 2>&1 | tee log\n'
>>> print(with_resume(text, "/w/out/x-step00000004-state"), end="")
accelerate launch \
  sd-scripts/flux_train_network.py \
  --save_state \
  --loss_type l2 \
  --resume /w/out/x-step00000004-state 2>&1 | tee log
"""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

#: A training script of kohya sd-scripts (flux_train_network.py, train_network.py, sdxl_train*.py, ...).
TRAIN_SCRIPT = re.compile(r"(^|/)[^/]*train[^/]*\.py$")
OPERATORS = set(";&|()<>")


@dataclass(frozen=True)
class Word:
    """One shell word: its value after quote removal and its span in the script's text."""

    value: str
    start: int
    end: int


def commands(text: str) -> list[list[Word]]:
    """The simple commands of a shell script as lists of words; operators, redirections and
    comments end a command (what follows them is not an argument of it)."""
    out: list[list[Word]] = []
    current: list[Word] = []
    i, n = 0, len(text)

    def end_command() -> None:
        nonlocal current
        if current:
            out.append(current)
        current = []

    while i < n:
        ch = text[i]
        if ch in " \t":
            i += 1
        elif text.startswith("\\\n", i):
            i += 2
        elif ch == "\n":
            end_command()
            i += 1
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch in OPERATORS:
            end_command()
            i += 1
        else:
            word, i = _word(text, i)
            if word.value.isdigit() and i < n and text[i] in "<>":
                end_command()  # `2>&1`: a redirection, not an argument
            else:
                current.append(word)
    end_command()
    return out


def _word(text: str, i: int) -> tuple[Word, int]:
    start, n, value = i, len(text), []
    while i < n:
        ch = text[i]
        if ch in " \t\n" or ch in OPERATORS:
            break
        if ch == "\\":
            if text.startswith("\\\n", i):
                i += 2
                continue
            value.append(text[i + 1:i + 2])
            i += 2
        elif ch == "'":
            close = text.find("'", i + 1)
            close = n if close < 0 else close
            value.append(text[i + 1:close])
            i = close + 1
        elif ch == '"':
            i += 1
            while i < n and text[i] != '"':
                if text[i] == "\\" and i + 1 < n and text[i + 1] in '"\\$`\n':
                    if text[i + 1] != "\n":
                        value.append(text[i + 1])
                    i += 2
                else:
                    value.append(text[i])
                    i += 1
            i += 1
        elif text.startswith("$(", i):
            depth, j = 0, i
            while j < n:
                depth += text[j] == "("
                depth -= text[j] == ")"
                j += 1
                if depth == 0 and text[j - 1] == ")":
                    break
            value.append(text[i:j])
            i = j
        else:
            value.append(ch)
            i += 1
    return Word("".join(value), start, min(i, n)), min(i, n)


def launch_command(text: str) -> list[Word] | None:
    """The command that runs the training script (`accelerate launch ... flux_train_network.py ...`)."""
    for command in commands(text):
        if any(TRAIN_SCRIPT.search(w.value) for w in command):
            return command
    return None


def arguments(command: list[Word]) -> list[Word]:
    """The training script's own arguments: the words after its path."""
    for k, word in enumerate(command):
        if TRAIN_SCRIPT.search(word.value):
            return command[k + 1:]
    return []


def flag_value(text: str, flag: str) -> str | None:
    """The value of `--flag VALUE` / `--flag=VALUE` in the launch command (the last one wins)."""
    found = None
    args = arguments(launch_command(text) or [])
    for k, word in enumerate(args):
        if word.value == flag and k + 1 < len(args):
            found = args[k + 1].value
        elif word.value.startswith(flag + "="):
            found = word.value[len(flag) + 1:]
    return found


def has_flag(text: str, flag: str) -> bool:
    """Whether the launch command passes the switch `flag` (e.g. `--save_state`)."""
    return any(w.value == flag for w in arguments(launch_command(text) or []))


def with_resume(text: str, checkpoint: str | None) -> str:
    """The script with `--resume <checkpoint>` as the launch command's last argument, replacing any
    earlier `--resume`; with checkpoint None, the script with `--resume` removed."""
    if launch_command(text) is None:
        raise ValueError("no command in it runs a training script (*train*.py)")
    while True:  # drop every --resume (one at a time: spans move after each cut)
        args = arguments(launch_command(text))
        cut = None
        for k, word in enumerate(args):
            if word.value == "--resume":
                cut = (k, min(k + 1, len(args) - 1))
            elif word.value.startswith("--resume="):
                cut = (k, k)
        if cut is None:
            break
        command = launch_command(text)
        first, last = args[cut[0]], args[cut[1]]
        before = command[command.index(first) - 1]
        text = text[:before.end] + text[last.end:]
    if checkpoint is None:
        return text
    command = launch_command(text)
    last = command[-1]
    line_start = text.rfind("\n", 0, last.start) + 1
    multiline = "\\\n" in text[command[0].start:last.start]
    if multiline:
        indent = re.match(r"[ \t]*", text[line_start:]).group(0) or "  "
        addition = f" \\\n{indent}--resume {shlex.quote(checkpoint)}"
    else:
        addition = f" --resume {shlex.quote(checkpoint)}"
    return text[:last.end] + addition + text[last.end:]
