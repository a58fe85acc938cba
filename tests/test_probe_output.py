"""The probe's output as a hostile or broken pod python prints it: bytes that are not UTF-8,
marked lines that are not JSON objects, a line of 50 MB. `podcheck facts` and `check` read what
they can and say what they skipped, in one line, instead of a traceback or a false timeout.

The pod python is a shell script (podsim.fake_python): no real interpreter prints these bytes
on purpose, and the case is what podcheck makes of them."""
from __future__ import annotations

import json

import podsim

GOOD = '@@podcheck@@ {"section": "python", "data": {"version": "3.11.2", "packages": {}}}'


def garbage_pod(tmp_path, body: str) -> podsim.SimPod:
    pod = podsim.SimPod(tmp_path)
    pod.workspace.mkdir(parents=True)
    python = podsim.fake_python(tmp_path / "py" / "python", body)
    pod.configure(pod={"workspace": str(pod.workspace), "python": str(python), "gpu": "absent",
                       "probe_timeout": 10.0}, torch={"cuda": "cpu"}, attention={"sage": "off"})
    return pod


def test_invalid_utf8_and_non_object_json_after_the_marker(tmp_path):
    pod = garbage_pod(tmp_path, f"printf '%s\\n' '{GOOD}'\n"
                                "printf '@@podcheck@@ \\377\\376 not text\\n'\n"
                                "printf '@@podcheck@@ [1, 2]\\n@@podcheck@@ 5\\n@@podcheck@@ \"done\"\\n'\n"
                                "exit 0")
    run = pod.podcheck("facts")
    assert run.rc == 0 and "Traceback" not in run.stderr, run.stderr
    data = json.loads(run.stdout)
    assert data["python"]["version"] == "3.11.2"
    assert data["probe_error"] == ("probe printed no facts (output was not podcheck JSON); "
                                   "it printed a marked line that is not JSON")
    check = pod.podcheck("--json", "-", "--select", "gpu.torch_build")
    message = check.result("gpu.torch_build")["message"]
    assert "did not finish within" not in message and "Traceback" not in check.stderr
    assert "probe printed no facts" in message and "not JSON" in message


def test_non_object_json_is_named(tmp_path):
    pod = garbage_pod(tmp_path, "printf '@@podcheck@@ [1, 2]\\n'")
    data = json.loads(pod.podcheck("facts").stdout)
    assert data["probe_error"].endswith("it printed a marked line that is a JSON list, not an object")


def test_a_50_mb_marked_line_is_skipped_unread(tmp_path):
    pod = garbage_pod(tmp_path, f"printf '%s\\n' '{GOOD}'\n"
                                "printf '@@podcheck@@ {\"section\": \"torch\", \"data\": {\"junk\": \"'\n"
                                "head -c 50000000 /dev/zero | tr '\\0' x\n"
                                "printf '\"}}\\n@@podcheck@@ {\"stage\": \"done\"}\\n'")
    run = pod.podcheck("facts")
    assert run.rc == 0, run.stderr
    assert len(run.stdout) < 10_000, "the flood must not reach the output (nor the redactor)"
    data = json.loads(run.stdout)
    assert data["python"]["version"] == "3.11.2" and data["torch"] == {} and data["probe_error"] is None
