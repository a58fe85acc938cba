"""State checkpoints of a kohya sd-scripts / FluxGym run: which `<name>-...-state` folders under an
output folder are complete (a train_state.json and everything accelerate's save_state writes after
it, see missing_parts), oldest first. training.resume resumes from the newest of them.
"""
from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass

#: kohya sd-scripts' state folder names (library/train_util.py): epoch, step, end of training.
STATE_DIR = re.compile(r"^(?P<name>.+?)-(?:(?P<epoch>\d{6})|step(?P<step>\d{8}))?-?state$")


@dataclass
class Checkpoint:
    path: str
    step: int  # train_state.json's current_step (or the number in the name)
    epoch: int
    mtime: float



_LIST_STATES = r"""
for d in "$1"/*-state; do
  [ -f "$d/train_state.json" ] || continue
  printf '%s\0' "$d"; find "$d" -maxdepth 0 -printf '%T@\0'; head -c 4096 "$d/train_state.json"; printf '\0'
  find "$d" -mindepth 1 -maxdepth 1 -printf '%y %s %f\n'; printf '\0'
done; true
"""

#: What accelerate's save_state writes into a state folder, in this order (accelerate/checkpointing.py):
#: the weights (`model.safetensors`, `model_1.safetensors`..., `pytorch_model*.bin`; FSDP/DeepSpeed: a
#: `pytorch_model*` folder), `optimizer*.bin` (FSDP: an `optimizer_*` folder), `scheduler*.bin`,
#: `sampler*.bin`, `scaler.pt`, and last `random_states_<process>.pkl`. sd-scripts' pre-hook writes
#: train_state.json before all of them, so a save that died or hangs leaves a folder with
#: train_state.json and only some of the rest, which `load_state` cannot load.
_WEIGHTS = re.compile(r"^(?:model|pytorch_model)(?:_\d+)?\.(?:safetensors|bin)$|^pytorch_model\w*$")
_OPTIMIZER = re.compile(r"^optimizer(?:_\d+)?(?:\.bin)?$")
_RANDOM = re.compile(r"^random_states_\d+\.pkl$")


def missing_parts(entries: dict[str, tuple[str, int]]) -> list[str]:
    """What a state folder lacks for accelerate's load_state, given {name: (type f|d, size)}; [] when complete.

    An empty file counts as missing (a write that never got its bytes)."""
    def has(pattern: re.Pattern[str]) -> bool:
        return any(pattern.match(name) and (kind == "d" or size > 0) for name, (kind, size) in entries.items())
    out = []
    if not has(_WEIGHTS):
        out.append("model.safetensors")
    deepspeed = any(name == "pytorch_model" and kind == "d" for name, (kind, _) in entries.items())
    if not deepspeed and not has(_OPTIMIZER):
        out.append("optimizer.bin")
    if not has(_RANDOM):
        out.append("random_states_0.pkl")
    return out


def checkpoints(pod, output_dir: str, output_name: str | None = None,
                rejected: list[str] | None = None) -> list[Checkpoint]:
    """Complete state checkpoints in output_dir, oldest first: by step (train_state.json, else the name's
    number), then epoch, then mtime. A folder without a readable train_state.json, or without what
    accelerate writes after it (missing_parts), is no checkpoint; such folders are described in `rejected`."""
    names = {output_name} if output_name else {"epoch", "at", "last"}  # kohya's defaults without --output_name
    fields = pod.run("sh", "-c", _LIST_STATES, "sh", output_dir).stdout.split("\0")
    found = []
    for path, mtime, body, listing in zip(fields[0::4], fields[1::4], fields[2::4], fields[3::4]):
        path = path.lstrip("\n")
        match = STATE_DIR.match(posixpath.basename(path))
        if not match or match["name"] not in names:
            continue
        try:
            data = json.loads(body)
            when = float(mtime)
        except ValueError:
            if rejected is not None:
                rejected.append(f"{posixpath.basename(path)} (train_state.json is not JSON)")
            continue
        if not isinstance(data, dict):
            continue
        entries = {}
        for line in listing.splitlines():
            kind, _, rest = line.partition(" ")
            size, _, name = rest.partition(" ")
            if name and size.isdigit():
                entries[name] = (kind, int(size))
        lacking = missing_parts(entries)
        if lacking:
            if rejected is not None:
                rejected.append(f"{posixpath.basename(path)} (incomplete: no {', '.join(lacking)})")
            continue
        number = int(match["step"] or match["epoch"] or 0)
        final = not (match["step"] or match["epoch"])
        step = _int(data.get("current_step"), number if match["step"] else -1)
        epoch = _int(data.get("current_epoch"), number if match["epoch"] else -1)
        found.append((step, epoch, final, when, Checkpoint(path, step, epoch, when)))
    found.sort(key=lambda t: t[:4])
    return [t[-1] for t in found]


def _int(value, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default
