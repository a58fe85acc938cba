"""The one redaction layer: everything podcheck prints or writes (terminal, JSON, JUnit, Prometheus,
Markdown, HTML, the report bundle) passes through a Redactor first.

It removes secrets by name (a variable, config key, JSON key or CLI flag whose name says TOKEN,
SECRET, KEY, PASSWORD, PASS or CREDENTIAL), by shape (private-key blocks, `Authorization:` headers,
credentials inside URLs, well-known token prefixes such as `hf_`, `ya29.`, `AKIA`), by value (secrets
learned from the environment and from config files, wherever they show up later), and GPU UUIDs
unless they are wanted.

>>> Redactor().text("HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz0123 and https://me:pw@host/x")
'HF_TOKEN=[REDACTED] and https://me:[REDACTED]@host/x'
"""
from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
from typing import Any, Iterable, Mapping

from podcheck.host.files import write_atomic

REDACTED = "[REDACTED]"

#: Words that make a variable secret when its (upper-case) name contains them.
ENV_WORDS = ("TOKEN", "SECRET", "KEY", "PASSWORD", "PASSWD", "PASS", "CREDENTIAL")
#: The same for other names (config keys, JSON keys, flags), matched per word: `private_key`,
#: `client_secret`, `refreshToken`; but not `passed` or `tokenizer`.
NAME_PARTS = {"token", "secret", "key", "password", "passwd", "pass", "passphrase", "credential",
              "credentials", "apikey", "secretkey", "accesskey", "auth", "authorization"}
#: Variables secret by their prefix, whatever the rest of the name (CIVITAI_* hold API tokens).
ENV_PREFIXES = ("CIVITAI_",)
#: A learned value shorter than this is too common a string to replace everywhere.
MIN_LEARNED = 6

_ENV_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
_WORDS = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+")

_PRIVATE_KEY = re.compile(
    r"-----BEGIN ([A-Z0-9 ]*)PRIVATE KEY-----(?:.*?-----END [A-Z0-9 ]*PRIVATE KEY-----|(?:\\n|[A-Za-z0-9+/=\s])*)",
    re.S)
_AUTH_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n]+")
_AUTH_SCHEME = re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]{8,}")
#: `scheme://user:password@` keeps the user; a long user alone (`https://<token>@github.com`) is a token.
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s@:\"'<>]*)(:[^/\s@\"'<>]*)?@")
_TOKEN_SHAPES = re.compile(
    r"\b(?:hf_[A-Za-z0-9]{20,}|ya29\.[A-Za-z0-9_-]{10,}|(?:AKIA|ASIA)[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{20,}"
    r"|github_pat_[A-Za-z0-9_]{20,}|xox[abpr]-[A-Za-z0-9-]{10,}|sk-[A-Za-z0-9_-]{20,}|rpa_[A-Za-z0-9]{20,})"
    r"|(?<![\w/])1//[A-Za-z0-9_-]{20,}")
_GPU_UUID = re.compile(r"\b(GPU|MIG)-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")

_QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"|'[^'\n]*'"
_VALUE = rf"(?:{_QUOTED}|\{{[^\n]*\}}|\[[^\n]*\]|[^\s\"',;&]+)"
#: A line that is one spaced assignment (INI, TOML, rclone.conf: `token = {...}`; headers:
#: `X-Api-Key: ...`): the rest of the line is the value.
_LINE_ASSIGN = re.compile(
    r"(?m)^([ \t]*(?:export[ \t]+)?([A-Za-z_][\w.-]*)([ \t]+=[ \t]*|[ \t]*=[ \t]+|[ \t]*:[ \t]+))(\S.*?)[ \t]*$")
#: `NAME=value` inside a line (env dumps, query strings, command lines).
_INLINE_ASSIGN = re.compile(rf"(?<![\w-])(([A-Za-z_][\w.]*)[ \t]*=[ \t]*)({_VALUE})")
#: `"name": value` (JSON).
_JSON_PAIR = re.compile(rf"(\"([^\"\\\n]+)\"[ \t]*:[ \t]*)({_VALUE})")
#: `--api-key value`, `--hf-token=value` (command lines).
_FLAG = re.compile(rf"(?<![\w-])(--?([A-Za-z][\w-]*)(?:=|[ \t]+))(?!-)({_VALUE})")
#: A value that is empty or already masked (`***` from podcheck.domain.rclone, `XXX` from `rclone config redacted`).
_ALREADY_MASKED = re.compile(r"^(|\*+|X+)$")
#: `KeyError: 'x'` starts like a `key: value` line but is a traceback; `:` lines must not end so.
_NOT_A_KEY = re.compile(r"(Error|Exception|Warning)$")


def is_secret_name(name: str) -> bool:
    """Does this variable, key or flag name hold a secret? (`HF_TOKEN`, `client_secret`, `--api-key`)."""
    name = name.strip().lstrip("-")
    if not name:
        return False
    if _ENV_NAME.match(name):
        return any(word in name for word in ENV_WORDS) or name.startswith(ENV_PREFIXES)
    parts = [p.lower() for p in _WORDS.findall(name)]
    return any(p in NAME_PARTS for p in parts) or "".join(parts) in NAME_PARTS


class Redactor:
    """Removes secrets from text and from data; `learn()` adds literal values to remove everywhere."""

    def __init__(self, uuids: bool = True, known: Iterable[str] = ()):
        self.uuids = uuids
        self._known: set[str] = set()
        self.learn(*known)

    @classmethod
    def from_env(cls, env: Mapping[str, str], uuids: bool = True) -> "Redactor":
        """A Redactor that knows the values of the secret variables in `env`."""
        redactor = cls(uuids=uuids)
        redactor.learn_env(env)
        return redactor

    def learn(self, *values: Any) -> None:
        """Remember literal secret values (and their JSON-escaped forms) to remove wherever they appear."""
        for value in values:
            if not isinstance(value, str):
                continue
            for variant in {value.strip(), json.dumps(value.strip())[1:-1]}:
                if len(variant) >= MIN_LEARNED:
                    self._known.add(variant)
            for line in value.splitlines():  # a multi-line secret may be quoted one line at a time
                if len(line.strip()) >= 16:
                    self._known.add(line.strip())

    def learn_env(self, env: Mapping[str, str]) -> None:
        self.learn(*(v for k, v in env.items() if is_secret_name(k)))

    def learn_json(self, obj: Any) -> None:
        """Learn the values under secret names in parsed JSON (a service-account key, an OAuth token)."""
        if isinstance(obj, dict):
            for key, value in obj.items():
                if is_secret_name(str(key)) and not isinstance(value, (dict, list)):
                    self.learn(value)
                else:
                    self.learn_json(value)
        elif isinstance(obj, list):
            for value in obj:
                self.learn_json(value)

    def learn_config(self, text: str) -> None:
        """Learn the secret values of an INI/TOML/rclone.conf text (`token = {...}`, `client_secret = ...`)."""
        for m in _LINE_ASSIGN.finditer(text):
            if is_secret_name(m.group(2)):
                value = m.group(4).strip()
                self.learn(value)
                try:
                    self.learn_json(json.loads(value))  # rclone's token is JSON: learn its secret parts too
                except ValueError:
                    pass

    # --- text ---------------------------------------------------------------------------------

    def text(self, text: str) -> str:
        """`text` without secrets."""
        if not text:
            return text
        out = _PRIVATE_KEY.sub(f"{REDACTED} private key", text)
        for value in sorted(self._known, key=len, reverse=True):
            out = out.replace(value, REDACTED)
        out = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, out)
        out = _AUTH_SCHEME.sub(lambda m: f"{m.group(1)} {REDACTED}", out)
        out = _URL_USERINFO.sub(_userinfo, out)
        out = _LINE_ASSIGN.sub(self._line, out)
        for pattern in (_JSON_PAIR, _INLINE_ASSIGN, _FLAG):
            out = pattern.sub(lambda m: _replace_value(m.group(2), m.group(1), m.group(3), m.group(0)), out)
        out = _TOKEN_SHAPES.sub(REDACTED, out)
        if self.uuids:
            out = _GPU_UUID.sub(lambda m: f"{m.group(1)}-{REDACTED}", out)
        return out

    @staticmethod
    def _line(m: re.Match[str]) -> str:
        if ":" in m.group(3) and _NOT_A_KEY.search(m.group(2)):
            return m.group(0)
        return _replace_value(m.group(2), m.group(1), m.group(4), m.group(0))

    def write(self, target: str | os.PathLike | None, text: str) -> None:
        """Write `text`, redacted, to a file (atomically) or to stdout (`None` or "-")."""
        clean = self.text(text)
        if target is None or str(target) == "-":
            sys.stdout.write(clean)
            sys.stdout.flush()
        else:
            write_atomic(target, clean)

    # --- data ---------------------------------------------------------------------------------

    def data(self, obj: Any) -> Any:
        """A copy of `obj` (dicts, lists, dataclasses, strings) without secrets: a value under a secret
        name is replaced whole, every string is passed through `text()`."""
        if isinstance(obj, str):
            return self.text(obj)
        if isinstance(obj, dict):
            return {k: (REDACTED if isinstance(k, str) and is_secret_name(k) and _has_value(v) else self.data(v))
                    for k, v in obj.items()}
        if isinstance(obj, (list, tuple)):
            return type(obj)(self.data(v) for v in obj)
        if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
            changes = {f.name: self.data(getattr(obj, f.name)) for f in dataclasses.fields(obj) if f.init}
            return dataclasses.replace(obj, **changes)
        return obj


def _userinfo(m: re.Match[str]) -> str:
    scheme, user, password = m.group(1), m.group(2), m.group(3)
    if password:
        return f"{scheme}{user}:{REDACTED}@"
    return f"{scheme}{REDACTED}@" if len(user) >= 16 else m.group(0)


def _replace_value(name: str, prefix: str, value: str, whole: str) -> str:
    """`prefix` + REDACTED (keeping the quotes) when `name` is secret; else `whole` unchanged."""
    if not is_secret_name(name) or REDACTED in value or _ALREADY_MASKED.match(value.strip("\"'")):
        return whole
    quote = value[0] if len(value) > 1 and value[0] in "\"'" and value[-1] == value[0] else ""
    return f"{prefix}{quote}{REDACTED}{quote}"


def _has_value(value: Any) -> bool:
    return value not in (None, "", [], {}) and not isinstance(value, bool)
