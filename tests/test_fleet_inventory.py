"""Fleet inventories and per-host config tables: what `--hosts` expands to, and which setting wins."""
from __future__ import annotations

import podsim
import pytest

from podcheck import config as config_mod
from podcheck.cli.fleet import exit_code
from podcheck.fleet import inventory
from podcheck.results import CheckResult, Report


def test_host_file_with_comments_and_commas(tmp_path):
    hosts = tmp_path / "pods.txt"
    hosts.write_text("# the studio's pods\nssh://pod-1\n\nssh://pod-2, paramiko://pod-3  # the new one\nssh://pod-1\n")
    got = inventory.expand(f"@{hosts},ssh://pod-4")
    assert [h.name for h in got] == ["ssh://pod-1", "ssh://pod-2", "paramiko://pod-3", "ssh://pod-4"]
    assert inventory.is_fleet(f"@{hosts}") and not inventory.is_fleet("ssh://pod-1")


def test_glob_matches_the_host_names_of_the_ssh_config(tmp_path):
    conf = tmp_path / "ssh_config"
    conf.write_text("Host *\n  User root\nHost pod-a pod-b\n  Port 2200\nHost gpu-* !gpu-x\nHost pod-c\n")
    got = inventory.expand("ssh://pod-*", ssh_config=str(conf))
    assert [(h.name, h.spec) for h in got] == [("pod-a", "ssh://pod-a"), ("pod-b", "ssh://pod-b"), ("pod-c", "ssh://pod-c")]
    assert got[0].options == {"ssh_config": str(conf)}
    with pytest.raises(inventory.InventoryError, match="give one"):
        inventory.expand("ssh://pod-*")
    with pytest.raises(inventory.InventoryError, match="no Host in"):
        inventory.expand("ssh://db-*", ssh_config=str(conf))


def test_bad_host_lists_are_one_line_and_exit_2(tmp_path):
    pod = podsim.SimPod(tmp_path)
    pod.configure(pod={"workspace": str(tmp_path)})
    for hosts, words in ((f"@{tmp_path}/none.txt", "cannot read host file"), ("pod-1,pod-2", "not a host URL"),
                         ("ssh://x-*", "matches the Host names of --ssh-config")):
        run = pod.podcheck("--hosts", hosts)
        assert run.rc == 2 and run.stdout == "", run.stderr
        (line,) = run.stderr.strip().splitlines()
        assert line.startswith("podcheck: error: --hosts") and words in line


def test_host_tables_ansible_vars_and_env_in_order(tmp_path):
    path = tmp_path / "podcheck.toml"
    path.write_text('[pod]\nuser = "alice"\ngpu = "required"\nworkspace = "/ws"\n'
                    '[hosts."pod-*".pod]\ngpu = "optional"\nuser = "bob"\n'
                    '[hosts."pod-7".pod]\nuser = "carol"\n'
                    '[hosts."pod-7".disk]\nmin_free_gib = 1.5\n')
    base = config_mod.load(path, env={})
    assert (base.pod.user, base.pod.gpu) == ("alice", "required")
    seven = config_mod.load(path, env={}, host=["ssh://pod-7", "pod-7"])
    assert (seven.pod.user, seven.pod.gpu, seven.disk.min_free_gib) == ("carol", "optional", 1.5)
    # Ansible host vars lie under the [hosts] tables, over the file's own tables
    three = config_mod.load(path, env={}, host=["pod-3"], host_vars={"podcheck_pod_user": "dave",
                                                                     "podcheck_pod_workspace": "/mnt/ws", "other": 1})
    assert (three.pod.user, three.pod.workspace, three.pod.state_dir) == ("bob", "/mnt/ws", "/mnt/ws/.podcheck")
    # the environment still wins over all of them
    env = config_mod.load(path, env={"PODCHECK_USER": "eve"}, host=["pod-7"])
    assert env.pod.user == "eve"
    with pytest.raises(config_mod.ConfigError, match="podcheck_pod_nosuch"):
        config_mod.load(path, env={}, host=["x"], host_vars={"podcheck_pod_nosuch": 1})


def test_a_typo_in_a_host_table_fails_every_run(tmp_path):
    path = tmp_path / "podcheck.toml"
    path.write_text('[hosts."pod-1".pod]\nusr = "bob"\n')
    with pytest.raises(config_mod.ConfigError, match=r"\[hosts.'pod-1'\]: unknown key \[pod\] 'usr'"):
        config_mod.load(path, env={})


def test_exit_codes_say_failed_and_unreachable_apart():
    ok = Report("a", "runtime", results=[CheckResult("pod.workspace", "pod", "passed")])
    bad = Report("b", "runtime", results=[CheckResult("pod.workspace", "pod", "failed")])
    gone = Report("c", "runtime", unreachable="Connection refused")
    assert exit_code([ok]) == 0
    assert exit_code([ok, bad]) == 1
    assert exit_code([ok, gone]) == 4
    assert exit_code([bad, gone]) == 5
