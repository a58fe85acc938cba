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


def test_pass_as_a_word_of_a_time_is_no_secret():
    from podcheck.reports.redact import is_secret_name
    assert not is_secret_name("pass_timeout_seconds") and not is_secret_name("passed")
    assert is_secret_name("db_pass") and is_secret_name("RCLONE_CONFIG_PASS") and is_secret_name("pass")


JWT = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSJ9.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
SLACK = "https://hooks.slack.com/services/T01ABCDEF/B02GHIJKL/AbCdEfGhIjKlMnOpQrStUvWx"


@pytest.mark.parametrize("text, secret", [
    ("sas_url = https://acct.blob.core.windows.net/c?sv=2022-11-02&ss=b&sig=Ab%2Bcd3Efg4Hij%3D", "Ab%2Bcd3Efg4Hij"),
    ("rclone lsd :azureblob: --azureblob-sas-url https://a.blob.core.windows.net/c?sv=2022&sig=Zx9yW8vU7t%2F",
     "Zx9yW8vU7t"),
    ("GET https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIA/x&X-Amz-Signature=0a1b2c3d4e5f6a7b8c9d", "0a1b2c3d4e5f6a7b"),
    (f"NOTIFY_URL={SLACK}", "AbCdEfGhIjKlMnOpQrStUvWx"),
    ("POST /services/T01ABCDEF/B02GHIJKL/AbCdEfGhIjKlMnOpQrStUvWx 200", "AbCdEfGhIjKlMnOpQrStUvWx"),
    ("hook https://discord.com/api/webhooks/123456789012/abcdefGHIJKLmnopqrstUVWXyz0123", "abcdefGHIJKLmnopqrst"),
    (f"SESSION_INFO={JWT}", "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"),
    (f"got {JWT} from the proxy", "eyJzdWIiOiJhbGljZSJ9"),
    ("Cookie: session=s%3AabcDEF123456.xyz; theme=dark", "abcDEF123456"),
    ("using api key 3f9a8b7c6d5e4f3a2b1c to download", "3f9a8b7c6d5e4f3a2b1c"),
])
def test_token_shapes_without_secret_names(text, secret):
    out = Redactor().text(text)
    assert secret not in out and REDACTED in out, out


def test_a_cut_learned_value_loses_its_pieces_too():
    """sync.running cuts argv at 80 characters and sync.errors lines at 220 before the report redacts:
    the learned value no longer matched, and 28 + 12 of its 40 characters leaked."""
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    r = Redactor.from_env({"AWS_SECRET_ACCESS_KEY": secret})
    argv = f"rclone sync /workspace/output s3:bucket --user-agent {secret} --transfers 8"
    for cut in (argv[:80], argv[-40:], f"({argv[:80]}) matches", secret[:12] + " and " + secret[-12:]):
        out = r.text(cut)
        assert not any(secret[i:i + 8] in out for i in range(len(secret) - 7)), out
        assert REDACTED in out and any(word in out for word in ("rclone sync", "--transfers 8", " and "))


def test_secrets_go_the_words_around_them_stay():
    """Issue 10: redaction plus the cut turned rclone's causes into `*** … [REDACTED] tcp …`."""
    from podcheck.domain import rclone
    line = ('2026/11/23 12:00:00 ERROR : Failed to create file system for "gdrive:": couldn\'t fetch token: '
            'Post "https://oauth2.googleapis.com/token": dial tcp 142.250.74.10:443: connect: connection refused')
    for out in (Redactor().text(line), rclone.redact_line(line), Redactor().text(rclone.redact_line(line))):
        assert out == line, out
    assert "token: ***" in rclone.redact_line("refresh token: 1//0gPLANTED0123456789abcdef")
    assert Redactor().text("service-account key /tmp/pytest-0/sa.json is readable") == \
        "service-account key /tmp/pytest-0/sa.json is readable"
    assert Redactor().data({"pass_timeout_seconds": 3600.0}) == {"pass_timeout_seconds": 3600.0}
    assert "key frames 24" in Redactor().text("key frames 24") and "token count 1234" in Redactor().text("token count 1234")


def test_for_config_learns_the_rclone_config(tmp_path):
    from types import SimpleNamespace
    conf = tmp_path / "rclone.conf"
    conf.write_text("[s3]\ntype = s3\nsecret_access_key = PLANTEDfromTheRcloneConf0123\n")
    r = Redactor.for_config(SimpleNamespace(sync=SimpleNamespace(rclone_config=str(conf))), env={})
    assert r.text("copying with PLANTEDfromTheRcloneConf0123 now") == f"copying with {REDACTED} now"
