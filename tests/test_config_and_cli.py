"""Config contract and CLI bad input: always one line on stderr and exit 2, never a traceback."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podcheck import config
from podcheck.cli import main

import podsim


def cli(*args, env=None, cwd=None):
    done = subprocess.run([sys.executable, "-m", "podcheck", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=120)
    return done


def assert_one_line_error(done_or_err, rc=2):
    rc_got, err = (done_or_err.returncode, done_or_err.stderr) if hasattr(done_or_err, "returncode") else done_or_err
    assert rc_got == rc
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("podcheck: error: "), err
    assert "Traceback" not in err


def test_defaults_are_a_runpod_pod():
    cfg = config.load(env={})
    assert cfg.source is None
    assert cfg.pod.workspace == "/workspace" and cfg.pod.comfyui_dir == "/workspace/ComfyUI"
    assert cfg.pod.python == "/workspace/venv/bin/python" and cfg.pod.state_dir == "/workspace/.podcheck"
    assert cfg.sync.log == "/workspace/.podcheck/sync.log" and cfg.comfyui.port == 8188
    assert cfg.torch.cuda == "12.9" and cfg.attention.sage == "required" and cfg.pod.gpu == "required"


def test_discovery_order_and_env_overrides(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "podcheck.toml").write_text('[pod]\nuser = "from-workspace"\n')
    monkeypatch.chdir(tmp_path)
    cfg = config.load(env={"PODCHECK_WORKSPACE": str(ws)})
    assert cfg.source == str(ws / "podcheck.toml") and cfg.pod.user == "from-workspace"
    assert cfg.pod.comfyui_dir == f"{ws}/ComfyUI", "{workspace} follows $PODCHECK_WORKSPACE"
    (tmp_path / "podcheck.toml").write_text('[pod]\nuser = "from-cwd"\n')
    assert config.load(env={"PODCHECK_WORKSPACE": str(ws)}).pod.user == "from-cwd"
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('[pod]\nuser = "explicit"\nstate_dir = "{workspace}/state"\n')
    cfg = config.load(env={"PODCHECK_CONFIG": str(explicit), "PODCHECK_USER": "bob"})
    assert cfg.pod.user == "bob", "$PODCHECK_USER wins over the file"
    assert cfg.sync.log == "/workspace/state/sync.log", "{state_dir} expands after the workspace"
    assert config.load(str(explicit), env={}).pod.user == "explicit"


@pytest.mark.parametrize("text, fragment", [
    ('[pod]\nworkspac = "/x"\n', "unknown key [pod] 'workspac'"),
    ('[pods]\n', "unknown section ['pods']"),
    ('[pod]\ngpu = "sometimes"\n', "[pod] gpu must be one of required, optional, absent"),
    ('[comfyui]\nport = "8188"\n', "[comfyui] port must be an integer, got string"),
    ('[sync]\nenabled = 1\n', "[sync] enabled must be a boolean, got integer"),
    ('[pod]\nusers = "alice"\n', "[pod] users must be a list of strings"),
    ('[memory]\nmin_ram_available_gib = -1\n', "must not be negative"),
    ('[pod]\npython = "{nowhere}/python"\n', "unknown placeholder {nowhere}"),
    ('pod = 3\n', "[pod] must be a table"),
    ('[pod\n', "not valid TOML"),
])
def test_bad_config_is_one_line_naming_file_and_key(tmp_path, text, fragment):
    path = tmp_path / "podcheck.toml"
    path.write_text(text)
    with pytest.raises(config.ConfigError) as err:
        config.load(path, env={})
    message = str(err.value)
    assert message.startswith(str(path)) and fragment in message and "\n" not in message


def test_cli_bad_input_exit_2(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[comfyui]\nport = "x"\n')
    assert_one_line_error(cli("--config", str(bad)))
    unreadable = tmp_path / "locked.toml"
    unreadable.write_text("[pod]\n")
    unreadable.chmod(0)
    done = cli("--config", str(unreadable))
    if os.geteuid() != 0:  # root reads anything; a directory is unreadable for everyone
        assert_one_line_error(done)
    assert_one_line_error(cli("--config", str(tmp_path)))
    assert_one_line_error(cli("--config", str(tmp_path / "missing.toml")))
    assert_one_line_error(cli("--profile", "production", "--config", str(tmp_path / "missing.toml")))
    assert_one_line_error(cli("--no-such-option"))
    assert_one_line_error(cli("list", "--bogus"))


def test_cli_select_matching_nothing_is_no_verdict(cpu_pod):
    run = cpu_pod.podcheck("--select", "nosuch.check")
    assert_one_line_error((run.rc, run.stderr))
    assert "no check matches nosuch.check" in run.stderr


def test_version_list_and_quiet(cpu_pod, tmp_path):
    from podcheck import __version__
    assert cli("--version").stdout.strip() == f"podcheck {__version__}"
    listing = cpu_pod.podcheck("list").stdout
    for check_id in ("system.ffmpeg", "gpu.driver", "gpu.torch_build", "gpu.torch_sees_gpu", "attention.sage_import"):
        assert check_id in listing
    cpu_pod.configure(attention={"sage": "required"})
    run = cpu_pod.podcheck("-q", "--select", "attention.sage_import")
    assert run.rc == 1
    lines = run.stdout.strip().splitlines()
    assert any("FAIL" in ln and "attention.sage_import" in ln for ln in lines)
    assert not any("PASS" in ln for ln in lines), "-q prints failures only"
    assert "Root cause: attention.sage_import" in lines[-1]


def test_json_to_file_and_table_together(cpu_pod, tmp_path):
    out = tmp_path / "report.json"
    run = cpu_pod.podcheck("--json", str(out), "--select", "system.ffmpeg")
    assert run.rc == 0 and "PASS" in run.stdout and "system.ffmpeg" in run.stdout
    assert '"schema": "podcheck/1"' in out.read_text()


def test_pytest_runs_the_checks_directly(cpu_pod):
    """`pytest checks/` from the repo root uses the same plugin (conftest.py loads it)."""
    done = subprocess.run([sys.executable, "-m", "pytest", "checks/", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                           f"--pod-config={cpu_pod.config_path}", "--pod-select=system.ffmpeg,gpu.torch_build"],
                          cwd=podsim.REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-2000:]
    assert "2 passed" in done.stdout


# --- generated garbage -------------------------------------------------------------------------

SCALARS = st.one_of(st.integers(-5, 10**6), st.floats(allow_nan=False), st.booleans(),
                    st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), max_size=8),
                    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
KNOWN = [(s, k) for s, keys in config.DEFAULTS.items() for k in keys]


def _toml_value(v):
    return podsim.toml_dumps({"x": {"v": v}}).splitlines()[1][4:] if not isinstance(v, dict) else \
        "{" + ", ".join(f"{podsim._toml_str(k)} = {x}" for k, x in v.items()) + "}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=200))
def test_garbage_files_give_one_line(tmp_path, data):
    path = tmp_path / "g.toml"
    path.write_bytes(data)
    try:
        config.load(path, env={})
    except config.ConfigError as exc:
        assert "\n" not in str(exc) and str(exc).startswith(str(path))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KNOWN), value=SCALARS)
def test_wrong_types_give_one_line(tmp_path, key, value):
    section, name = key
    path = tmp_path / "t.toml"
    path.write_text(f"[{section}]\n{name} = {_toml_value(value)}\n")
    try:
        cfg = config.load(path, env={})
    except config.ConfigError as exc:
        assert "\n" not in str(exc) and f"[{section}] {name}" in str(exc)
        return
    default = config.DEFAULTS[section][name]
    got = getattr(getattr(cfg, section), name)
    assert type(got) is type(default) or (isinstance(default, float) and isinstance(got, float))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(KNOWN), value=SCALARS)
def test_cli_never_tracebacks_on_wrong_types(tmp_path, capsys, key, value):
    """In-process `podcheck list --config` with a generated value: exit 0 or one line and exit 2."""
    section, name = key
    path = tmp_path / "c.toml"
    path.write_text(f"[{section}]\n{name} = {_toml_value(value)}\n")
    try:
        config.load(path, env={})
    except config.ConfigError:
        code = main(["list", "--config", str(path)])
        assert_one_line_error((code, capsys.readouterr().err))


def test_facts_command_prints_what_the_probe_sees(cpu_pod):
    run = cpu_pod.podcheck("facts")
    assert run.rc == 0, run.stderr
    facts = podsim.json.loads(run.stdout)
    assert facts["torch"]["version"] == "2.13.0+cpu" and facts["torch"]["cuda"] is None
    assert facts["probe_error"] is None and facts["nvml"]["available"] is False
    assert_one_line_error(cli("facts", "--hosts", "bogus://x"))
