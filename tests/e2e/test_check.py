"""`xtm-composer check` against the emulator and the real engine: green when all is well, each
failure named with its fix."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from xtm_composer.crypto import load_private_key_file, private_key_pkcs8_pem, public_key_spki_pem

from .conftest import TOKEN

pytestmark = pytest.mark.engine


def check(tmp_path, emulator_url, key_file, **overrides):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DOCKER_HOST": os.environ.get("DOCKER_HOST", ""),
        "MANAGER__ID": "check-manager",
        "MANAGER__CREDENTIALS_KEY_FILEPATH": str(key_file),
        "OPENCTI__ENABLE": "true",
        "OPENCTI__URL": emulator_url,
        "OPENCTI__TOKEN": TOKEN,
        "OPENCTI__DAEMON__SELECTOR": "docker",
        **overrides,
    }
    result = subprocess.run(
        [sys.executable, "-m", "xtm_composer", "check", "--config-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    return result.returncode, result.stdout


def test_all_green_against_the_emulator_and_the_engine(tmp_path, emulator, key_file):
    code, out = check(tmp_path, emulator.server.url, key_file)
    assert code == 0, out
    assert "FAIL" not in out and out.count("[ok  ]") == 6


def test_wrong_token_is_named_with_its_fix(tmp_path, emulator, key_file):
    code, out = check(tmp_path, emulator.server.url, key_file, OPENCTI__TOKEN="wrong")
    assert code == 1
    assert "[FAIL] opencti platform: token refused" in out and "fix: set opencti.token" in out


def test_stopped_engine_is_named_with_its_fix(tmp_path, emulator, key_file):
    code, out = check(tmp_path, emulator.server.url, key_file, DOCKER_HOST=f"unix://{tmp_path}/gone.sock")
    assert code == 1
    assert "[FAIL] opencti orchestrator (docker)" in out and "fix: start Docker" in out


@pytest.mark.parametrize(
    ("make_key", "fix"),
    [
        (
            lambda p: p.write_text("-----BEGIN RSA PUBLIC KEY-----\nAAAA\n-----END RSA PUBLIC KEY-----\n"),
            "private key file, not the public one",
        ),
        (lambda p: p.write_text("garbage"), "give a PEM private key"),
        (lambda p: p.write_bytes(private_key_pkcs8_pem(rsa.generate_private_key(65537, 2048))), "need RSA-4096"),
        (lambda p: None, "check the path"),
    ],
    ids=["public-key", "garbage", "2048-bit", "missing-file"],
)
def test_bad_key_is_named_with_its_fix(tmp_path, emulator, make_key, fix):
    key = tmp_path / "bad-key.pem"
    make_key(key)
    if key.exists():
        key.chmod(0o600)
    code, out = check(tmp_path, emulator.server.url, key)
    assert code == 1
    assert "[FAIL] private key" in out and fix in out


def test_key_readable_by_others_fails_the_check(tmp_path, emulator, key_file):
    key_file.chmod(0o644)
    code, out = check(tmp_path, emulator.server.url, key_file)
    assert code == 1 and "chmod 600" in out


def test_missing_composer_env_file_is_named(tmp_path, emulator, key_file):
    code, out = check(tmp_path, emulator.server.url, key_file, COMPOSER_ENV="staging")
    assert code == 1 and "staging.yaml" in out and "unset COMPOSER_ENV" in out


def test_openaev_is_checked_too(tmp_path, emulator, key_file):
    from xtm_composer.emulator.server import EmulatorServer
    from xtm_composer.emulator.state import EmulatorState

    state = EmulatorState(token=TOKEN, kind="openaev")
    with EmulatorServer(state) as aev:
        extra = {
            "OPENAEV__ENABLE": "true",
            "OPENAEV__URL": aev.url,
            "OPENAEV__TOKEN": TOKEN,
            "OPENAEV__DAEMON__SELECTOR": "docker",
        }
        code, out = check(tmp_path, emulator.server.url, key_file, **extra)
        assert code == 1 and "[FAIL] openaev platform" in out and "registers" in out  # not registered yet
        state.register_manager("check-manager", "x", public_key_spki_pem(load_private_key_file(key_file)))
        code, out = check(tmp_path, emulator.server.url, key_file, **extra)
        assert code == 0, out
        assert "[ok  ] openaev platform" in out and "[ok  ] openaev orchestrator (docker)" in out
