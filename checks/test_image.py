"""image: a built image (validated before it is pushed) holds the files it was built from, and its
start scripts launch ComfyUI with the flags the config requires."""
from pathlib import Path

import pytest

from podcheck.domain import entrypoint, manifest

SHOWN = 40  # files named in a message before "and N more"


def _local(cfg, path: str) -> Path:
    """A path on the machine running podcheck; relative ones are relative to the config file."""
    base = Path(cfg.source).parent if cfg.source else Path.cwd()
    return base / path


def _named(paths: list[str]) -> str:
    more = f" and {len(paths) - SHOWN} more" if len(paths) > SHOWN else ""
    return ", ".join(paths[:SHOWN]) + more


@pytest.mark.podcheck(id="image.source_fresh", profiles=("image",), remedy="rebuild the image from the current sources")
def test_source_fresh(pod, cfg, say):
    """The image's files match the source checkout or build manifest they were built from."""
    sources = cfg.image.sources
    if not sources:
        pytest.skip("no [image] sources configured")
    recorded = manifest.load(_local(cfg, cfg.image.manifest)) if cfg.image.manifest else None
    problems, checked = [], 0
    for image_path, source in sources.items():
        if recorded is None:
            expected = manifest.hash_source(_local(cfg, source))
        else:
            key = manifest.source_key(source)
            if key not in recorded:
                raise manifest.ManifestError(
                    f"manifest {cfg.image.manifest} has no source {key!r} (it has: {', '.join(recorded) or 'none'})")
            expected = recorded[key]
        actual = manifest.image_hashes(pod, image_path, sorted(expected))
        changed, missing = manifest.differences(expected, actual)
        at = (lambda rel: image_path if rel == manifest.ITSELF else f"{image_path.rstrip('/')}/{rel}")
        if changed:
            problems.append(f"{len(changed)} file(s) differ from {source}: {_named([at(p) for p in changed])}")
        if missing:
            problems.append(f"{len(missing)} file(s) of {source} are missing: {_named([at(p) for p in missing])}")
        checked += len(expected)
    against = f"manifest {cfg.image.manifest}" if recorded is not None else "the source checkout"
    assert not problems, (
        f"the image is a stale build, it does not match {against}: " + "; ".join(problems)
        + ". Rebuild it from the current sources (docker build --no-cache) before pushing")
    say(f"{checked} file(s) in {len(sources)} source(s) match {against}")


@pytest.mark.podcheck(id="image.entrypoint_flags", profiles=("image",),
                      remedy="add the missing flags to the launch line the message names, then rebuild")
def test_entrypoint_flags(pod, cfg, say):
    """Every ComfyUI launch line in the start scripts passes the flags the config requires."""
    scripts = cfg.image.start_scripts
    if not scripts:
        pytest.skip("no [image] start_scripts configured")
    required = entrypoint.required_flags(cfg)
    if not required:
        pytest.skip("the config requires no launch flags (sage not required, no users, no [image] required_flags)")
    problems, launch_count, silent = [], 0, []
    for path in scripts:
        text = pod.read_text(path)
        if text is None:
            problems.append(f"{path}: cannot be read in the image")
            continue
        found = entrypoint.launches(text)
        if not found:
            silent.append(path)
        for number, line in found:
            launch_count += 1
            missing = entrypoint.missing_flags(line, required)
            if missing:
                shown = line if len(line) <= 160 else line[:157] + "..."
                problems.append(f"{path}:{number} launches ComfyUI without {' '.join(missing)}: {shown}")
    if not launch_count and not problems:
        problems.append(f"no line of {', '.join(scripts)} launches ComfyUI (python main.py / comfy launch)")
    assert not problems, "; ".join(problems) + (
        f". Every launch needs {' '.join(required)} (flags hidden in shell variables cannot be verified)")
    quiet = f"; {', '.join(silent)} launch nothing" if silent else ""
    say(f"{launch_count} launch line(s) pass {' '.join(required)}{quiet}")
