"""Fleets: many pods checked (and repaired) at once.

inventory (host lists, ssh_config Host entries, Ansible) -> sshmux (one ssh connection per host)
-> run (one pytest session, hosts spread over pytest-xdist workers by the worker plugin) ->
per-host Reports -> reports/fleet.py (hosts x areas). fix rolls `--fix` over the pods.
"""
