"""Config contract and CLI bad input: always one line on stderr and exit 2, never a traceback."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import podsim
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podcheck import config, config_sections
from podcheck.cli import main


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
KNOWN = [(s, k) for s, keys in config_sections.DEFAULTS.items() for k in keys]


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
    default = config_sections.DEFAULTS[section][name]
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


# --- config input that is not a small, finite, sane file (issue 11) -------------------------------

def test_a_fifo_or_device_as_config_is_one_line_not_a_hang(tmp_path):
    fifo = tmp_path / "cfg.fifo"
    os.mkfifo(fifo)
    for path in (fifo, "/dev/zero", "/dev/urandom"):
        with pytest.raises(config.ConfigError, match=r"not a regular file$"):
            config.load(path, env={})
    assert_one_line_error(cli("list", "--config", str(fifo)))


def test_an_oversized_config_is_refused(tmp_path):
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 << 20) + "\n")
    with pytest.raises(config.ConfigError, match="too large for a config file"):
        config.load(big, env={})


@pytest.mark.parametrize("body, says", [
    ("[disk]\nmin_free_gib = nan\n", "[disk] min_free_gib must be a finite number, got nan"),
    ("[pod]\ncommand_timeout = nan\n", "[pod] command_timeout must be a finite number"),
    ("[memory]\nmin_ram_available_gib = inf\n", "must be a finite number, got inf"),
    ("[pod]\nprobe_timeout = 0\n", "[pod] probe_timeout must be more than 0"),
    ("[watch]\ninterval_seconds = 0\n", "[watch] interval_seconds must be more than 0"),
])
def test_non_finite_numbers_and_zero_timeouts_are_one_line(tmp_path, body, says):
    path = tmp_path / "c.toml"
    path.write_text(body)
    with pytest.raises(config.ConfigError) as exc:
        config.load(path, env={})
    assert says in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("depth", [2000, 5000])
def test_deeply_nested_toml_is_one_line(tmp_path, depth):
    for body in (f"[pod]\nusers = {'[' * depth}{']' * depth}\n", f"x = {'{a = ' * depth}1{'}' * depth}\n"):
        path = tmp_path / "deep.toml"
        path.write_text(body)
        with pytest.raises(config.ConfigError) as exc:
            config.load(path, env={})
        assert "\n" not in str(exc.value)
        assert_one_line_error(cli("list", "--config", str(path)))


def test_typos_get_did_you_mean(tmp_path):
    path = tmp_path / "c.toml"
    for body, says in (("[pod]\nworkspce = '/w'\n", "unknown key [pod] 'workspce'; did you mean workspace?"),
                       ("[comfyiu]\nport = 1\n", "unknown section ['comfyiu']; did you mean comfyui?"),
                       ("[pod]\ngpu = 'requird'\n", "got 'requird'; did you mean required?")):
        path.write_text(body)
        with pytest.raises(config.ConfigError) as exc:
            config.load(path, env={})
        assert says in str(exc.value)


def test_sections_are_typed_and_know_where_each_value_came_from(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[comfyui]\nport = 8190\n")
    cfg = config.load(path, env={"PODCHECK_USER": "alice"})
    assert isinstance(cfg.comfyui, config_sections.ComfyUISection) and cfg.comfyui.port == 8190
    assert cfg.origin("comfyui", "port") == "file" and cfg.origin("pod", "user") == "env PODCHECK_USER"
    assert cfg.origin("disk", "min_free_gib") == "default"


# --- podcheck init / podcheck config ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["gpu", "cpu", "nosync"])
def test_init_writes_a_config_that_loads_as_its_kind(tmp_path, kind):
    out = tmp_path / "podcheck.toml"
    done = cli("init", "--kind", kind, "--user", "alice", "-o", str(out))
    assert done.returncode == 0, done.stderr
    cfg = config.load(out, env={})
    assert cfg.pod.user == "alice"
    assert (cfg.pod.gpu, cfg.torch.cuda, cfg.attention.sage) == (
        ("absent", "cpu", "off") if kind == "cpu" else ("required", "12.9", "required"))
    assert cfg.torch.index_url.endswith("/whl/cpu" if kind == "cpu" else "/whl/cu129")
    assert cfg.sync.enabled is (kind != "nosync")
    assert out.read_text().startswith("# podcheck.toml for a"), "the file explains itself"


def test_init_never_overwrites_without_a_backup(tmp_path):
    out = tmp_path / "podcheck.toml"
    out.write_text("[pod]\nuser = 'mine'\n")
    assert_one_line_error(cli("init", "-o", str(out)))
    assert out.read_text() == "[pod]\nuser = 'mine'\n"
    assert cli("init", "--force", "-o", str(out)).returncode == 0
    backups = list(tmp_path.glob("podcheck.toml.bak-*"))
    assert len(backups) == 1 and backups[0].read_text() == "[pod]\nuser = 'mine'\n"
    assert_one_line_error(cli("init", "--user", "../x", "-o", str(tmp_path / "other.toml")))


def test_config_shows_every_key_its_origin_and_redacts(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('[torch]\nindex_url = "https://user:s3cretPassw0rd@wheels.example/simple"\n')
    done = subprocess.run([sys.executable, "-m", "podcheck", "config", "--config", str(path)], capture_output=True,
                          text=True, env={**os.environ, "PODCHECK_USER": "alice"}, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"# config: {path}\n")
    assert 'user = "alice"' in done.stdout and "# env PODCHECK_USER" in done.stdout
    assert re.search(r'index_url = "https://user:\S*@wheels.example/simple"\s+# file', done.stdout)
    assert "s3cretPassw0rd" not in done.stdout
    keys = sum(len(v) for v in config_sections.DEFAULTS.values())
    assert len(re.findall(r"  # (default|file|env \w+)$", done.stdout, re.M)) == keys
    js = subprocess.run([sys.executable, "-m", "podcheck", "config", "--config", str(path), "--json"],
                        capture_output=True, text=True, timeout=60)
    doc = json.loads(js.stdout)
    assert doc["config"] == str(path) and doc["sections"]["torch"]["index_url"]["origin"] == "file"
    assert doc["sections"]["disk"]["min_free_gib"] == {"value": 10.0, "origin": "default"}
