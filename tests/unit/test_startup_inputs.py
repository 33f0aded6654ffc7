"""`xtm-composer run` with each bad input: one line, non-zero exit, no traceback; the key forms
users really hand in (PKCS#1, CRLF line endings) start normally."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from xtm_composer.crypto import private_key_pkcs8_pem

from ..paths import SHARED_VECTORS

BASE_ENV = {
    "MANAGER__ID": "startup-test",
    "OPENCTI__ENABLE": "true",
    "OPENCTI__URL": "http://127.0.0.1:9",
    "OPENCTI__TOKEN": "t",
    "OPENCTI__DAEMON__SELECTOR": "docker",
    "DOCKER_HOST": "unix:///nonexistent.sock",
}


def command(tmp_path):
    return [sys.executable, "-m", "xtm_composer", "run", "--config-dir", str(tmp_path / "none")]


def env_with(**extra: str) -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", ""), **BASE_ENV, **extra}


def key_file(tmp_path, content: bytes, name="key.pem"):
    path = tmp_path / name
    path.write_bytes(content)
    path.chmod(0o600)
    return str(path)


BAD_INPUTS = {
    "missing key": (lambda p: {}, "credentials_key"),
    "2048-bit key": (
        lambda p: {
            "MANAGER__CREDENTIALS_KEY_FILEPATH": key_file(
                p, private_key_pkcs8_pem(rsa.generate_private_key(public_exponent=65537, key_size=2048))
            )
        },
        "4096",
    ),
    "unreadable key file": (lambda p: {"MANAGER__CREDENTIALS_KEY_FILEPATH": str(p)}, "cannot read"),
    "public key instead of private": (
        lambda p: {
            "MANAGER__CREDENTIALS_KEY_FILEPATH": key_file(p, (SHARED_VECTORS / "test-key.public.spki.pem").read_bytes())
        },
        "public key",
    ),
    "key file open to others with strict permissions": (
        lambda p: {
            "MANAGER__STRICT_KEY_PERMISSIONS": "true",
            "MANAGER__CREDENTIALS_KEY_FILEPATH": (lambda f: (os.chmod(f, 0o644), f)[1])(
                key_file(p, (SHARED_VECTORS / "test-key.pkcs8.pem").read_bytes())
            ),
        },
        "chmod 600",
    ),
    "unknown selector": (lambda p: {"OPENCTI__DAEMON__SELECTOR": "nomad"}, "opencti.daemon.selector"),
    "unknown docker option": (lambda p: {"OPENCTI__DAEMON__DOCKER__PRIVILIGED": "true"}, "priviliged"),
    "invalid level": (lambda p: {"MANAGER__LOGGER__LEVEL": "verbose"}, "manager.logger.level"),
    "bad ulimit": (lambda p: {"OPENCTI__DAEMON__DOCKER__ULIMITS": '[{"soft": 1}]'}, "ulimits"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_gives_one_line_and_a_non_zero_exit(tmp_path, case):
    make_env, needle = BAD_INPUTS[case]
    result = subprocess.run(
        command(tmp_path), capture_output=True, text=True, env=env_with(**make_env(tmp_path)), timeout=60
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    "variant",
    ["pkcs1-file", "crlf-file", "inline-literal-newlines"],
)
def test_key_forms_users_hand_in_start_normally_and_sigterm_exits_zero(tmp_path, variant):
    pkcs1 = (SHARED_VECTORS / "test-key.pkcs1.pem").read_bytes()
    pkcs8 = (SHARED_VECTORS / "test-key.pkcs8.pem").read_text()
    extra = {
        "pkcs1-file": {"MANAGER__CREDENTIALS_KEY_FILEPATH": key_file(tmp_path, pkcs1)},
        "crlf-file": {"MANAGER__CREDENTIALS_KEY_FILEPATH": key_file(tmp_path, pkcs8.replace("\n", "\r\n").encode())},
        "inline-literal-newlines": {"MANAGER__CREDENTIALS_KEY": pkcs8.replace("\n", "\\n")},
    }[variant]
    process = subprocess.Popen(command(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env_with(**extra))
    time.sleep(3)
    assert process.poll() is None, process.stderr.read() if process.stderr else ""
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0 and time.monotonic() - started < 5
    assert b"BEGIN" not in out + err  # never a line of key material in the logs


@pytest.mark.parametrize("directory", ["/etc/passwd", "/proc/1/nope"])
def test_an_unusable_log_directory_is_one_line(tmp_path, directory):
    extra = {
        "MANAGER__LOGGER__DIRECTORY": directory,
        "MANAGER__CREDENTIALS_KEY_FILEPATH": key_file(tmp_path, (SHARED_VECTORS / "test-key.pkcs8.pem").read_bytes()),
    }
    result = subprocess.run(command(tmp_path), capture_output=True, text=True, env=env_with(**extra), timeout=60)
    assert result.returncode != 0 and len(result.stderr.strip().splitlines()) == 1
    assert "manager.logger.directory" in result.stderr and "Traceback" not in result.stderr


def test_a_configuration_file_that_is_not_utf8_is_one_line(tmp_path):
    (tmp_path / "none").mkdir()
    (tmp_path / "none" / "default.yaml").write_bytes(b"\xff\xfe garbage")
    result = subprocess.run(command(tmp_path), capture_output=True, text=True, env=env_with(), timeout=60)
    assert result.returncode != 0 and "not UTF-8" in result.stderr and "Traceback" not in result.stderr
