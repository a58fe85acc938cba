"""The CLI's own text: -v shows durations, descriptions and the toolchain header; the JSON summary names
the root causes; a selection outside the profile says which profile to add; bad --hosts values are one
line; --help lists the choices of --profile and --format."""
from __future__ import annotations

import re

import podsim
import pytest


def with_comfyui_version(pod, version="0.3.99"):
    (pod.workspace / "ComfyUI").mkdir(parents=True, exist_ok=True)
    (pod.workspace / "ComfyUI" / "comfyui_version.py").write_text(f'__version__ = "{version}"\n')
    return pod


def test_verbose_prints_the_toolchain_durations_and_descriptions(cpu_pod):
    run = with_comfyui_version(cpu_pod).podcheck("-v", "--select", "gpu", "--select", "pod.workspace")
    assert run.rc == 0, run.stderr
    lines = run.stdout.splitlines()
    header = lines[lines.index("toolchain") + 1:lines.index("toolchain") + 9]
    labels = [ln.split()[0] for ln in header]
    assert labels == ["python", "torch", "torchvision", "sage", "triton", "ComfyUI", "GPUs", "driver"], header
    assert re.match(r"\s+torch\s+2\.13\.0\+cpu \(CPU build\)", header[1])
    assert header[5].split()[-1] == "0.3.99"
    row = next(i for i, ln in enumerate(lines) if "pod.workspace" in ln)
    assert re.search(r"\[\d+\.\d\d s\]$", lines[row])
    assert lines[row + 1].strip() == "The workspace (the network volume) is a directory podcheck can write to."
    plain = cpu_pod.podcheck("--select", "pod.workspace")
    assert "toolchain" not in plain.stdout and "network volume" not in plain.stdout


def test_json_summary_names_the_root_causes(cpu_pod, tmp_path):
    cpu_pod.configure(attention={"sage": "required"})
    run = cpu_pod.podcheck("--json", "-", "--select", "system.ffmpeg", "--select", "gpu",
                           "--select", "attention.sage_import", env={"PATH": podsim.path_without("ffmpeg", root=tmp_path)})
    summary = run.json["summary"]
    assert run.rc == 1 and summary["root_causes"] == ["system.ffmpeg", "attention.sage_import"], summary
    assert summary["failed"] == 2  # the counts stay: root_causes is additive


def test_select_outside_the_profile_says_which_profile_to_add(cpu_pod):
    run = cpu_pod.podcheck("--select", "image.source_fresh")
    assert run.rc == 2
    assert "no check matches image.source_fresh in profile runtime; add --profile image" in run.stderr


@pytest.mark.parametrize("args,message", [
    (["--hosts", ""], "--hosts is empty"),
    (["--hosts", "foo://pod"], "unknown host scheme 'foo://' in 'foo://pod'; valid: ansible://, chroot://, "),
    (["status", "--hosts", "sh://pod"], "unknown host scheme 'sh://'"),
    (["report", "--hosts", ""], "--hosts is empty"),
    (["--profile", "nightly"], "'nightly' is not one of 'image', 'boot', 'runtime'"),
])
def test_bad_hosts_and_choices_are_one_line(cpu_pod, args, message):
    run = cpu_pod.podcheck(*args)
    assert run.rc == 2 and run.stdout == ""
    (line,) = run.stderr.strip().splitlines()
    assert message in line and "ssh://" in line if "scheme" in message else message in line, line


def test_help_lists_the_choices(cpu_pod):
    assert "--profile <image|boot|runtime>" in cpu_pod.podcheck("--help").stdout
    assert "--format <table|json|md|html|junit|prometheus>" in cpu_pod.podcheck("check", "--help").stdout
    assert "--format <md|html|json>" in cpu_pod.podcheck("report", "--help").stdout
    assert "--profile <image|boot|runtime>" in cpu_pod.podcheck("serve", "--help").stdout


def test_report_starts_with_the_toolchain(cpu_pod):
    run = with_comfyui_version(cpu_pod).podcheck("report")
    assert run.rc == 0, run.stderr
    first = run.stdout.index("Toolchain")
    assert first < run.stdout.index("## Summary") < run.stdout.index("## Checks")
    assert run.stdout.count("## Toolchain") == 1
    assert re.search(r"ComfyUI\s*\|\s*0\.3\.99", run.stdout) and re.search(r"torch\s*\|\s*2\.13\.0\+cpu", run.stdout)
