"""Which pods a fleet run checks: `--hosts` URLs, `@FILE`, ssh_config Host names, Ansible groups.

>>> [h.name for h in expand("ssh://a,ssh://b")]
['ssh://a', 'ssh://b']

`ssh://pod-*` (a glob) matches the `Host` names of `--ssh-config`; `ansible://GROUP` the hosts of
`--ansible-inventory` (testinfra's Ansible runner: needs ansible-core, `pip install podcheck[ansible]`).
"""
from __future__ import annotations

import fnmatch
import os
import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GLOB = re.compile(r"[*?\[]")


class InventoryError(Exception):
    """A host list that cannot be read, worded as one line."""


@dataclass
class FleetHost:
    """One pod of the fleet: what reports call it, the testinfra URL and options to reach it."""

    name: str
    spec: str
    options: dict[str, Any] = field(default_factory=dict)  # testinfra.get_host keywords
    host_vars: dict[str, Any] = field(default_factory=dict)  # Ansible podcheck_* vars
    via: str = ""  # a URL testinfra resolves itself (ansible://NAME?ansible_inventory=...), for --fix

    def match_names(self) -> list[str]:
        """The names a `[hosts."<glob>"]` table may match: the name, the URL, the bare hostname."""
        names = [self.name, self.spec]
        rest = self.spec.split("://", 1)[-1]
        bare = rest.rsplit("@", 1)[-1].split(":", 1)[0].split("/", 1)[0]
        return list(dict.fromkeys(n for n in names + [bare] if n))


def expand(hosts: str, ssh_config: str | None = None, ssh_identity_file: str | None = None,
           ansible_inventory: str | None = None) -> list[FleetHost]:
    """The pods of a `--hosts` value, in the order given, each once."""
    found: dict[str, FleetHost] = {}
    for item in _items(hosts):
        for host in _one(item, ssh_config, ssh_identity_file, ansible_inventory):
            found.setdefault(host.name, host)
    if not found:
        raise InventoryError(f"--hosts {hosts}: no host in it")
    return list(found.values())


def is_fleet(hosts: str) -> bool:
    """More than one host, or a host list that names its hosts indirectly."""
    items = _items(hosts, read_files=False)
    return len(items) > 1 or any(i.startswith("@") or i.startswith("ansible://") or _is_glob(i) for i in items)


def _items(hosts: str, read_files: bool = True) -> list[str]:
    out: list[str] = []
    for item in (h.strip() for h in hosts.split(",")):
        if item.startswith("@") and read_files:
            out.extend(_read_file(item[1:]))
        elif item:
            out.append(item)
    return out


def _read_file(path: str) -> list[str]:
    """A host file: one URL per line (commas allowed too); `#` starts a comment."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InventoryError(f"--hosts @{path}: cannot read host file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise InventoryError(f"--hosts @{path}: not a text file") from None
    out: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("@"):
            raise InventoryError(f"--hosts @{path}: a host file cannot name another ({line})")
        out.extend(h.strip() for h in line.split(",") if h.strip())
    return out


def _is_glob(item: str) -> bool:
    scheme, _, rest = item.partition("://")
    return bool(rest) and scheme in ("ssh", "safe-ssh", "paramiko") and bool(GLOB.search(rest))


def _one(item: str, ssh_config, identity, inventory) -> list[FleetHost]:
    options = {k: v for k, v in (("ssh_config", ssh_config), ("ssh_identity_file", identity)) if v}
    if item.startswith("ansible://"):
        return _ansible(item[len("ansible://"):] or "all", inventory, ssh_config, identity)
    if _is_glob(item):
        scheme, _, pattern = item.partition("://")
        if not ssh_config:
            raise InventoryError(f"--hosts {item}: a host glob matches the Host names of --ssh-config; give one")
        names = [n for n in ssh_config_hosts(ssh_config) if fnmatch.fnmatchcase(n, pattern)]
        if not names:
            raise InventoryError(f"--hosts {item}: no Host in {ssh_config} matches {pattern}")
        return [FleetHost(n, f"{scheme}://{n}", dict(options)) for n in names]
    if "://" not in item:
        raise InventoryError(f"--hosts {item}: not a host URL (ssh://HOST, paramiko://HOST, local://, chroot:///ROOT)")
    return [FleetHost(item, item, dict(options) if not item.startswith(("local", "chroot")) else {})]


def ssh_config_hosts(path: str) -> list[str]:
    """The concrete names of an ssh_config's `Host` lines (no wildcards, no negations), in file order."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise InventoryError(f"--ssh-config {path}: cannot read ({exc.strerror or exc})") from None
    names: list[str] = []
    for line in text.splitlines():
        words = line.strip().split(None, 1)
        if len(words) == 2 and words[0].lower() == "host":
            try:
                patterns = shlex.split(words[1], comments=True)
            except ValueError:
                continue
            names += [p for p in patterns if not GLOB.search(p) and not p.startswith("!")]
    return list(dict.fromkeys(names))


def _ansible(pattern: str, inventory: str | None, ssh_config: str | None, identity: str | None) -> list[FleetHost]:
    """The hosts of an Ansible group or host pattern, resolved to the ssh/paramiko/local URL testinfra
    would use (ansible_host, ansible_port, ansible_user, keys, ssh args), with their podcheck_* vars."""
    from testinfra.utils.ansible_runner import AnsibleRunner

    _find_ansible()
    runner = AnsibleRunner(inventory)
    try:
        names = runner.get_hosts(pattern)
    except Exception as exc:  # ansible-inventory failed: its message, one line
        raise InventoryError(f"--hosts ansible://{pattern}: {' '.join(str(exc).split())[-300:]}") from None
    if not names:
        raise InventoryError(f"--hosts ansible://{pattern}: no host in the inventory matches")
    out = []
    for name in names:
        host = runner.get_host(name, ssh_config=ssh_config, ssh_identity_file=identity)
        if host is None:
            raise InventoryError(f"--hosts ansible://{pattern}: {name} uses a connection podcheck cannot drive")
        spec, options = _url_of(host.backend)
        variables = {k: v for k, v in runner.get_variables(name).items() if k.startswith("podcheck_")}
        via = f"ansible://{name}" + (f"?ansible_inventory={os.path.abspath(inventory)}" if inventory else "")
        out.append(FleetHost(name, spec, options, variables, via))
    return out


def _find_ansible() -> None:
    """testinfra runs `ansible-inventory` from PATH: also find the one installed beside this Python."""
    if shutil.which("ansible-inventory"):
        return
    beside = Path(sys.executable).parent
    if not (beside / "ansible-inventory").exists():
        raise InventoryError("ansible:// hosts need ansible-core (pip install 'podcheck[ansible]')")
    os.environ["PATH"] = f"{beside}{os.pathsep}{os.environ.get('PATH', '')}"


def _url_of(backend: Any) -> tuple[str, dict[str, Any]]:
    """A testinfra backend as the URL and keywords that rebuild it (in a worker process)."""
    kind = backend.get_connection_type()
    if kind == "local":
        return "local://", {}
    spec = backend.host
    url = f"{kind}://" + (f"{spec.user}@" if spec.user else "") + spec.name + (f":{spec.port}" if spec.port else "")
    options = {k: getattr(backend, k) for k in ("ssh_config", "ssh_identity_file", "ssh_extra_args")
               if getattr(backend, k, None)}
    if getattr(backend, "sudo", False):
        options["sudo"] = True
        if backend.sudo_user:
            options["sudo_user"] = backend.sudo_user
    return url, options
