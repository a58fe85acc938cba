"""The redaction layer on its own: each kind of secret, what must survive, data walking."""
from __future__ import annotations

import json

import pytest

from podcheck.reports.redact import REDACTED, Redactor, is_secret_name
from podcheck.results import CheckResult, Report

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n"


@pytest.mark.parametrize("name", ["HF_TOKEN", "RUNPOD_API_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_ACCESS_KEY_ID",
                                  "AWS_SESSION_TOKEN", "CIVITAI_API", "MY_PASSWORD", "DB_PASS", "client_secret",
                                  "token", "private_key", "refreshToken", "service_account_credentials",
                                  "--api-key", "X-Api-Key", "pass"])
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["passed", "skipped", "tokenizer", "PATH", "HOME", "id", "type", "keyframes",
                                  "PWD", "team_drive", "root_folder_id", "KeyboardLayout"])
def test_names_that_are_not_secret(name):
    assert not is_secret_name(name)


@pytest.mark.parametrize("text, secret", [
    ("HF_TOKEN=hf_abcdefghijklmnopqrstuvwxyz0123", "hf_abcdefghijklmnopqrstuvwxyz0123"),
    ("export RUNPOD_API_KEY='rpa_0123456789ABCDEFGHIJ'", "rpa_0123456789ABCDEFGHIJ"),
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "wJalrXUtnFEMI/K7MDENG"),
    ("AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG", "AKIAIOSFODNN7EXAMPLE"),
    ('token = {"access_token":"ya29.a0AfH6SMBx","token_type":"Bearer","refresh_token":"1//0gLy"}', "ya29.a0AfH6SMBx"),
    ('token = {"access_token":"ya29.a0AfH6SMBx","token_type":"Bearer","refresh_token":"1//0gLy"}', "1//0gLy"),
    ("client_secret = GOCSPX-1234567890abcdef", "GOCSPX-1234567890abcdef"),
    ('{"type": "service_account", "private_key_id": "0123456789abcdef0123", "private_key": "x"}', "0123456789abcdef0123"),
    (json.dumps({"private_key": PEM}), "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"),
    (PEM, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"),
    ("2026/01/01 INFO : POST /upload Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload", "eyJhbGciOiJIUzI1NiJ9"),
    ('curl -H "Authorization: token ghp_0123456789abcdefghijABCDEFGHIJ" https://api', "ghp_0123456789abcdefghij"),
    ("fetching https://alice:hunter2hunter2@example.com/model.safetensors", "hunter2hunter2"),
    ("git clone https://ghp_0123456789abcdefghijABCDEFGHIJ@github.com/x/y", "ghp_0123456789abcdefghij"),
    ("GET https://civitai.com/api/download/models/1?token=abcdef123456&type=Model", "abcdef123456"),
    ("python main.py --listen --api-key=s3cr3t-value --hf-token s3cr3t-other", "s3cr3t-value"),
    ("python main.py --listen --api-key=s3cr3t-value --hf-token s3cr3t-other", "s3cr3t-other"),
    ("X-Api-Key: abcd1234efgh", "abcd1234efgh"),
    ("pass = obscured-rclone-pass", "obscured-rclone-pass"),
])
def test_secrets_are_removed(text, secret):
    out = Redactor().text(text)
    assert secret not in out and REDACTED in out


def test_what_is_not_secret_survives():
    text = ("KeyError: 'model.diffusion_model'\n"
            '{"passed": 3, "failed": 1, "id": "gpu.torch_build", "team_drive": "0ABCdef"}\n'
            "ssh://root@127.0.0.1:2222 tokenizer = clip_l\n"
            '{"access_token": "***", "client_secret": "XXX"}\n'  # masked already (podcheck.domain.rclone, rclone)
            "python main.py --listen 0.0.0.0 --port 8188 --use-sage-attention --output-directory /workspace/output/alice")
    assert Redactor().text(text) == text


def test_gpu_uuids_unless_kept():
    line = "GPU 0: NVIDIA GeForce RTX 5090 (UUID: GPU-5f3e2d1c-aaaa-bbbb-cccc-0123456789ab)"
    assert Redactor().text(line).endswith("(UUID: GPU-[REDACTED])")
    assert Redactor(uuids=False).text(line) == line


def test_learned_values_anywhere():
    redactor = Redactor.from_env({"HF_TOKEN": "plain-looking-value-42", "PATH": "/usr/bin", "SHORT_KEY": "abc"})
    out = redactor.text("downloading with plain-looking-value-42 from /usr/bin (abc)")
    assert "plain-looking-value-42" not in out and "/usr/bin" in out and "(abc)" in out


def test_learned_config_values_and_json_parts():
    redactor = Redactor()
    redactor.learn_config('[gdrive]\ntype = drive\ntoken = {"access_token":"opaque-access-1","refresh_token":"opaque-refresh-2"}\n')
    out = redactor.text("rclone said opaque-refresh-2 and opaque-access-1 expired")
    assert "opaque-refresh-2" not in out and "opaque-access-1" not in out


def test_data_walks_reports_and_keeps_types():
    report = Report(host="local", profile="runtime", results=[
        CheckResult("sync.config", "sync", "failed", message="rclone.conf has client_secret = GOCSPX-abcdef123")],
        facts={"env": {"HF_TOKEN": "hf_abcdefghijklmnopqrstuvwxyz0123", "count": 3, "ok": True}})
    clean = Redactor().data(report)
    assert isinstance(clean, Report) and report.results[0].message.endswith("GOCSPX-abcdef123")  # original intact
    assert clean.results[0].message == "rclone.conf has client_secret = [REDACTED]"
    assert clean.facts == {"env": {"HF_TOKEN": REDACTED, "count": 3, "ok": True}}
    assert clean.summary == report.summary
