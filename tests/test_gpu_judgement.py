"""GPU judgement on recorded facts (tests/data/gpu/*.json; each file says where its values come from)."""
import json
from pathlib import Path

import pytest

from podcheck import facts as facts_mod
from podcheck.domain import gpu

CASES = sorted((Path(__file__).parent / "data" / "gpu").glob("*.json"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_recorded_case(path):
    case = json.loads(path.read_text())
    assert case["recorded"] and case["sources"], "every facts file says where it was recorded"
    device = case["nvml"]["gpus"][0]
    expect = case["expect"]
    assert gpu.arch_covers(device["capability"], case["torch"]["arch_list"]) is expect["arch_covered"]
    driver = gpu.cuda_from_driver_int(case["nvml"]["cuda_driver_version"])
    assert gpu.driver_supports(driver, case["torch"]["cuda"]) is expect["driver_supports_torch"]
    if "needed_build" in expect:
        assert gpu.needed_build(device["capability"]) == expect["needed_build"]


@pytest.mark.parametrize("cap, arch, covered", [
    ((8, 9), ["sm_86"], True),             # same major, lower minor: cubin runs
    ((8, 6), ["sm_89"], False),            # higher minor does not run on a lower one
    ((9, 0), ["sm_80"], False),            # another major needs PTX
    ((9, 0), ["compute_80"], True),        # PTX JIT-compiles forward
    ((8, 0), ["compute_90"], False),       # but not backward
    ((12, 0), ["sm_120a"], True),
    ((12, 1), ["sm_120a"], False),         # 'a' cubins are for exactly that capability
    ((12, 0), [], False),
    ((12, 0), ["garbage", "sm_x"], False),
])
def test_arch_covers(cap, arch, covered):
    assert gpu.arch_covers(cap, arch) is covered


def test_driver_versions():
    assert gpu.cuda_from_driver_int(12090) == (12, 9)
    assert gpu.cuda_from_driver_int(13000) == (13, 0)
    assert gpu.driver_supports((12, 9), "12.9")
    assert not gpu.driver_supports((12, 8), "12.9")
    assert gpu.driver_supports((13, 0), "12.9")
    assert not gpu.driver_supports(None, "12.9"), "an unknown driver version cannot be trusted"
    assert gpu.driver_supports(None, None), "a CPU build needs no driver"
    assert gpu.cuda_tag("12.9") == "cu129" and gpu.cuda_tag(None) == "cpu"


def test_skip_reason_by_config():
    no_gpu = {"available": False, "error": "NVML: NVML Shared Library Not Found", "gpus": []}
    assert "absent" in gpu.skip_reason("absent", no_gpu)
    assert "NVML Shared Library Not Found" in gpu.skip_reason("optional", no_gpu)
    assert gpu.skip_reason("required", no_gpu) is None
    assert gpu.skip_reason("optional", {"gpus": [{"index": 0}]}) is None


def test_nvidia_smi_parsing():
    """The remote path: `nvidia-smi --query-gpu` CSV plus the banner's CUDA version."""
    csv = "0, NVIDIA H100 80GB HBM3, GPU-0f4b-uuid, 9.0, 81559, 80000, 1559, 3, 580.159.04\n"
    banner = "| NVIDIA-SMI 580.159.04   Driver Version: 580.159.04   CUDA Version: 13.0     |"
    out = facts_mod.parse_nvidia_smi(csv, banner)
    assert out["available"] and out["cuda_driver_version"] == 13000
    (g,) = out["gpus"]
    assert g["capability"] == [9, 0] and g["memory_total"] == 81559 * 1024 * 1024 and g["utilization"] == 3.0
    assert not facts_mod.parse_nvidia_smi("")["available"]
