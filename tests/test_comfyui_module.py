"""podcheck.domain.comfyui and comfyui_log: the argv parser against ComfyUI's own argparse declarations, process discovery and
HTTP on local and command-only (chroot) hosts, and the log helpers (comfyui_log)."""
from __future__ import annotations

import contextlib
import importlib
import io
import sys
import time

import podsim
import pytest
import sim_comfyui
import testinfra
from hypothesis import given, settings
from hypothesis import strategies as st

from podcheck import config
from podcheck.domain import comfyui, comfyui_log
from podcheck.host.pod import Pod


@pytest.fixture(scope="module")
def comfy_parser():
    """The stand-in's comfy/cli_args.py parser: ComfyUI's options as ComfyUI declares them."""
    sys.path.insert(0, str(sim_comfyui.STANDIN))
    try:
        module = importlib.import_module("comfy.cli_args")
    finally:
        sys.path.remove(str(sim_comfyui.STANDIN))
    return module.parser


STANDIN_FLAGS = comfyui.flag_names((sim_comfyui.STANDIN / "comfy" / "cli_args.py").read_text())


def test_flag_names_read_from_cli_args():
    assert {"--use-sage-attention", "--output-directory", "--listen", "--cpu", "--cpu-vae"} <= STANDIN_FLAGS
    assert STANDIN_FLAGS <= comfyui.FLAGS, "the built-in list knows every option the stand-in declares"
    assert comfyui.flag_names(None) == frozenset()


@pytest.mark.parametrize("tokens, flag, value", [
    (["--output-directory", "/w/out"], "--output-directory", "/w/out"),
    (["--output-directory=/w/out"], "--output-directory", "/w/out"),
    (["--output", "/w/out"], "--output-directory", "/w/out"),
    (["--output=/w/out"], "--output-directory", "/w/out"),
    (["--port", "1", "--port=2"], "--port", "2"),
    (["--listen"], "--listen", "0.0.0.0,::"),
    (["--listen", "--port", "9"], "--listen", "0.0.0.0,::"),
    (["--listen", "10.0.0.1", "--cpu"], "--listen", "10.0.0.1"),
    (["--reserve-vram", "-1"], "--reserve-vram", "-1"),
    (["--temp", "t"], "--temp-directory", "t"),
])
def test_parse_args_reads_values_like_argparse(tokens, flag, value):
    args = comfyui.parse_args(tokens, STANDIN_FLAGS)
    assert args.get(flag) == value
    assert not args.problems


def test_parse_args_prefixes_and_exact_names():
    assert comfyui.parse_args(["--use-sage"]).use_sage_attention
    assert comfyui.parse_args(["--cpu"]).has("--cpu") and not comfyui.parse_args(["--cpu"]).has("--cpu-vae")
    ambiguous = comfyui.parse_args(["--use-s"], STANDIN_FLAGS)
    assert not ambiguous.use_sage_attention
    assert ambiguous.problems == ("ambiguous option --use-s could match --use-sage-attention, --use-split-cross-attention",)
    assert comfyui.parse_args(["--nosuch"]).problems == ("unrecognized option --nosuch",)
    assert comfyui.parse_args(["stray"]).problems == ("unrecognized argument 'stray'",)
    defaults = comfyui.parse_args([])
    assert (defaults.port, defaults.listen, defaults.attention) == (8188, "127.0.0.1", None)
    assert comfyui.parse_args(["--use-pytorch"]).attention == "--use-pytorch-cross-attention"


def test_a_version_decides_its_own_prefixes():
    """An abbreviation unique in one ComfyUI version may be ambiguous in another: the pod's cli_args decides."""
    old = STANDIN_FLAGS - {"--use-sage-attention"}
    assert comfyui.parse_args(["--use-s"], old).has("--use-split-cross-attention")
    assert comfyui.parse_args(["--use-sage"], old).problems


SPELLINGS = ["--output-directory", "--output", "--out", "--o", "--port", "--po", "--listen", "--lis",
             "--use-sage-attention", "--use-sage", "--use-s", "--use-pytorch", "--cpu", "--cp", "--temp-directory",
             "--temp", "--input-directory", "--in", "--base-directory", "--fast", "--verbose", "--reserve-vram",
             "--disable-xformers", "--nosuch"]
VALUES = ["/w/out", "rel/dir", "8190", "-1", "0.0.0.0", "DEBUG"]
TOKENS = st.lists(st.tuples(st.sampled_from(SPELLINGS), st.lists(st.sampled_from(VALUES), max_size=2), st.booleans()),
                  max_size=6)


@settings(max_examples=300, deadline=None)
@given(TOKENS)
def test_parse_args_agrees_with_comfyuis_argparse(comfy_parser, pieces):
    tokens = []
    for spelling, values, joined in pieces:
        if joined and values:
            tokens += [f"{spelling}={values[0]}", *values[1:]]
        else:
            tokens += [spelling, *values]
    ours = comfyui.parse_args(tokens, STANDIN_FLAGS)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            theirs = comfy_parser.parse_args(tokens)
    except SystemExit:
        return  # ComfyUI would not start; ours need not judge what argparse refuses for types or arity
    assert not ours.problems, tokens
    assert ours.get("--output-directory") == theirs.output_directory
    assert ours.get("--temp-directory") == theirs.temp_directory
    assert ours.get("--input-directory") == theirs.input_directory
    assert ours.port == theirs.port and ours.listen == theirs.listen
    assert ours.use_sage_attention == theirs.use_sage_attention and ours.has("--cpu") == theirs.cpu


def test_problems_are_what_argparse_refuses(comfy_parser):
    for tokens in (["--use-s"], ["--cp"], ["--nosuch"], ["stray"], ["--o", "x"]):
        assert comfyui.parse_args(tokens, STANDIN_FLAGS).problems, tokens
        with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            comfy_parser.parse_args(tokens)


@pytest.mark.parametrize("argv, index", [
    (["python", "main.py"], 1),
    (["/ws/venv/bin/python3.11", "-u", "-X", "dev", "-W", "ignore", "/ws/ComfyUI/main.py", "--cpu"], 6),
    (["python3", "-uB", "-Wignore", "main.py"], 3),
    (["python", "-m", "comfy", "main.py"], None),
    (["python", "-c", "print(1)", "main.py"], None),
    (["python", "-um", "x"], None),
    (["python", "--", "main.py"], 2),
    (["bash", "main.py"], None),
    (["python"], None),
])
def test_script_index(argv, index):
    assert comfyui.script_index(argv) == index


def test_dirs_follow_comfyuis_folder_rules():
    argv = ("python", "main.py", "--base-directory", "base", "--temp-directory", "/w/temp/alice",
            "--output-directory", "../out/alice")
    proc = comfyui.ComfyProcess(1, argv, "/w/ComfyUI", None, 1, comfyui.parse_args(argv[2:]))
    dirs = proc.dirs("/w/ComfyUI")
    assert dirs.base == "/w/ComfyUI/base"
    assert dirs.output == "/w/out/alice"                 # relative to its working folder
    assert dirs.input == "/w/ComfyUI/base/input"         # from --base-directory
    assert dirs.temp == "/w/temp/alice/temp"             # ComfyUI appends "temp"
    assert proc.options == list(argv[2:])


def test_user_options_are_what_launch_flags_asks():
    assert comfyui.user_options("/w", "alice") == ["--output-directory", "/w/output/alice", "--input-directory",
                                                    "/w/input/alice", "--temp-directory", "/w/temp/alice",
                                                        "--user-directory", "/w/user/alice"]
    with pytest.raises(ValueError, match="invalid user name '../evil'"):
        comfyui.user_options("/w", "../evil")


def test_connect_host_and_urls():
    assert comfyui.connect_host("127.0.0.1") == "127.0.0.1"
    assert comfyui.connect_host("0.0.0.0,::") == "127.0.0.1"
    assert comfyui.connect_host("::") == "::1"
    assert comfyui.connect_host("10.1.2.3") == "10.1.2.3"
    assert comfyui.url_for(8188, "/queue", "::1") == "http://[::1]:8188/queue"


def test_launch_line_and_last_start():
    lines = ["[podcheck] ComfyUI launch pid=9", "Using sage attention", "Error running sage attention: old",
             "[podcheck] ComfyUI launch pid=9", "Total VRAM 1 MB", "Using sage attention", "To see the GUI go to: x",
             "[podcheck] ComfyUI launch pid=12", "Using pytorch attention"]
    assert comfyui_log.launch_line(lines, 9) == 3, "the last launch of that pid"
    assert comfyui_log.launch_line(lines, 12) == 7
    assert comfyui_log.launch_line(lines, 99) is None
    assert comfyui_log.last_start(lines) == (8, "Using pytorch attention")
    assert comfyui_log.last_start(lines[:7]) == (5, "Using sage attention")
    assert comfyui_log.last_start(["Using sub quadratic optimization for attention, if you have ..."])
    assert comfyui_log.last_start(["nothing"]) is None


# --- real processes, local and through commands only -----------------------------------------

def pods(sim):
    """The pod, reached locally and (as root) through commands only: chroot of /."""
    cfg = config.load(sim.config_path)
    local = Pod(cfg, testinfra.get_host("local://"))
    return [local, Pod(cfg, testinfra.get_host("/", connection="chroot"))] if len(sim_comfyui.HOSTS) > 1 else [local]


def test_processes_and_http_local_and_remote(tmp_path, torch_python, launcher):
    sim = sim_comfyui.comfy_pod(tmp_path, torch_python, sage="off")
    ws, comfy_dir = sim.workspace, sim.workspace / "ComfyUI"
    log = sim_comfyui.comfy_log(sim)
    link = tmp_path / "link-to-comfyui"
    link.symlink_to(comfy_dir)
    elsewhere = sim_comfyui.lay_comfyui(tmp_path / "other" / "ComfyUI")
    by_name = launcher.start(comfy_dir, "--output", str(ws / "output" / "alice"), python=torch_python, log=log)
    by_link = launcher.start(comfy_dir, "--cpu", python=torch_python, log=log, script=str(link / "main.py"), cwd=tmp_path)
    silent = launcher.start(comfy_dir, python=torch_python, log=log, env={"STANDIN_HTTP": "silent"}, wait="log")
    other = launcher.start(elsewhere, python=torch_python, log=tmp_path / "other.log")
    for pod in pods(sim):
        found = comfyui.processes(pod)
        assert [p.pid for p in found] == [by_name.pid, by_link.pid, silent.pid], pod.name
        first = found[0]
        assert first.cwd == str(comfy_dir) and first.script == "main.py"
        assert first.args.get("--output-directory") == str(ws / "output" / "alice")
        assert abs(first.started - time.time()) < 60
        stats = comfyui.request(pod, first.url("/system_stats"))
        assert stats.ok and stats.data["system"]["argv"][1:] == first.options, pod.name
        assert comfyui.request(pod, found[1].url("/queue")).data == {"queue_running": [], "queue_pending": []}
        freed = comfyui.request(pod, first.url("/free"), "POST", {"free_memory": True})
        assert freed.ok and freed.data is None
        started = time.monotonic()
        hung = comfyui.request(pod, found[2].url("/system_stats"), timeout=1.0)
        assert not hung.ok and hung.error == "no answer within 1 s", (pod.name, hung)
        assert time.monotonic() - started < 4
        refused = comfyui.request(pod, comfyui.url_for(sim_comfyui.free_port(), "/system_stats"))
        assert refused.status is None and "onnect" in refused.error, refused
    stats = comfyui.request(pods(sim)[0], first.url("/system_stats")).data
    assert stats["standin"]["free_calls"] == [{"unload_models": False, "free_memory": True}] * len(pods(sim))
    assert other.process.poll() is None, "a ComfyUI of another folder runs but is not listed"


def test_read_log(tmp_path, torch_python):
    sim = sim_comfyui.comfy_pod(tmp_path, torch_python, sage="off")
    path = sim_comfyui.comfy_log(sim)
    path.parent.mkdir(parents=True)
    path.write_text("a\n" * 10 + "last line\n")
    for pod in pods(sim):
        log = comfyui_log.read_log(pod, str(path), max_bytes=10)
        assert log.text == "last line\n" and abs(log.mtime - path.stat().st_mtime) < 1
        missing = comfyui_log.read_log(pod, str(tmp_path / "nope.log"))
        assert missing.text is None and "No such file" in missing.error


def test_http_through_the_pod_python_where_curl_is_missing(tmp_path, torch_python, launcher, monkeypatch):
    sim = sim_comfyui.comfy_pod(tmp_path, torch_python, sage="off")
    comfy = launcher.start(sim.workspace / "ComfyUI", python=torch_python, log=sim_comfyui.comfy_log(sim))
    silent = launcher.start(sim.workspace / "ComfyUI", python=torch_python, log=sim_comfyui.comfy_log(sim),
                            env={"STANDIN_HTTP": "silent"}, wait="log")
    if len(pods(sim)) < 2:
        pytest.skip("a command-only host (chroot of /) needs root")
    monkeypatch.setenv("PATH", podsim.path_without("curl", root=tmp_path))
    remote = pods(sim)[1]
    assert remote.run("curl", "--version").not_found
    answer = comfyui.request(remote, comfyui.url_for(comfy.port, "/queue"))
    assert answer.ok and answer.data == {"queue_running": [], "queue_pending": []}, answer
    posted = comfyui.request(remote, comfyui.url_for(comfy.port, "/queue"), "POST", {"clear": True})
    assert posted.ok and posted.status == 200
    missing = comfyui.request(remote, comfyui.url_for(comfy.port, "/nosuch"))
    assert (missing.status, missing.ok, missing.data) == (404, False, {"error": "not found"})
    hung = comfyui.request(remote, comfyui.url_for(silent.port, "/system_stats"), timeout=1.0)
    assert not hung.ok and hung.error == "no answer within 1 s", hung


# --- what the real ComfyUI 0.3.64 and ComfyUI-Manager write (lines copied from their runs here) -------

def test_append_options_keep_every_use():
    args = comfyui.parse_args(["--extra-model-paths-config", "a.yaml", "--cpu", "--extra-model-paths-config", "b.yaml",
                               "--port", "1", "--port", "2"])
    assert args.given["--extra-model-paths-config"] == ["a.yaml", "b.yaml"]
    assert args.get("--port") == "2"  # a plain option: the last use wins, as in argparse


def test_explanation_drops_traceback_frames_and_keeps_comfyuis_words():
    lines = ["[podcheck] ComfyUI launch pid=7", "Total VRAM 24106 MB, total RAM 24106 MB", "Traceback (most recent call last):",
             '  File "/w/ComfyUI/main.py", line 1, in <module>', "    import requests", "           ^^^^^^",
             "ModuleNotFoundError: No module named 'requests'"]
    assert comfyui_log.explanation(comfyui_log.run_lines("\n".join(lines), 7)) == [
        "Total VRAM 24106 MB, total RAM 24106 MB", "ModuleNotFoundError: No module named 'requests'"]
    sage = ["To use the `--use-sage-attention` feature, the `sageattention` package must be installed first.",
            "command:", "\t/w/venv/bin/python -m pip install sageattention"]
    assert comfyui_log.explanation(sage)[-1] == "/w/venv/bin/python -m pip install sageattention"
    assert comfyui_log.run_lines("x\n", 8, alone=False) is None


def test_manager_prefix_and_sage_causes():
    line = "[2026-12-01 22:19:40.123] Error running sage attention: Input tensors must be on cuda., using pytorch attention instead."
    bare = comfyui_log.strip_prefix(line)
    assert bare.startswith(comfyui_log.SAGE_FALLBACK)
    assert comfyui_log.sage_cause(bare) == (comfyui_log.SAGE_CAUSES[0][1], False)
    assert comfyui_log.sage_cause("Error running sage attention: Unsupported head_dim: 72")[1] is False
    assert comfyui_log.sage_cause("Error running sage attention: CUDA error: no kernel image is available")[1] is True


def test_node_failures_name_the_node_and_the_module():
    lines = ["Traceback (most recent call last):", "ModuleNotFoundError: No module named 'tabulate'",
             "Cannot import /w/ComfyUI/custom_nodes/needs_tabulate module for custom nodes: No module named 'tabulate'",
             "Import times for custom nodes:", "   0.0 seconds: /w/ComfyUI/custom_nodes/websocket_image_save.py",
             "[2026-12-01 22:19:40.123]    0.0 seconds (IMPORT FAILED): /w/ComfyUI/custom_nodes/needs_tabulate"]
    [failure] = comfyui_log.node_failures(lines)
    assert (failure.name, failure.missing_module) == ("needs_tabulate", "tabulate")


def test_the_torch_index_follows_torch_cuda():
    from podcheck.domain import gpu
    assert gpu.torch_index("13.0", "auto") == "https://download.pytorch.org/whl/cu130"
    assert gpu.torch_index("cpu", "auto") == "https://download.pytorch.org/whl/cpu"
    assert gpu.torch_index("cpu", "") == "" and gpu.torch_index("12.9", "https://x/y") == "https://x/y"
    assert gpu.companions("2.13.0+cpu") == "torchvision==0.28.* torchaudio==2.13.*"
