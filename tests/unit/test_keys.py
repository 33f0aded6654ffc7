"""Key sources and `keygen`: the file wins with a warning, new keys are RSA-4096 PKCS#8 with mode 0600."""

from __future__ import annotations

import stat
import subprocess
import sys

import pytest
from structlog.testing import capture_logs

from xtm_composer.config.settings import ManagerSettings
from xtm_composer.crypto import load_private_key_file
from xtm_composer.errors import ConfigurationError, CredentialsKeyError
from xtm_composer.keys import load_manager_key

from ..paths import SHARED_VECTORS


def test_file_wins_over_inline_key_with_a_warning():
    settings = ManagerSettings(
        id="m",
        credentials_key="not a key at all",
        credentials_key_filepath=SHARED_VECTORS / "test-key.pkcs1.pem",
    )
    with capture_logs() as logs:
        key = load_manager_key(settings)
    assert key.key_size == 4096
    assert any(entry["log_level"] == "warning" and "using the file" in entry["event"] for entry in logs)
    assert not any("not a key at all" in str(entry) for entry in logs)


def test_inline_key_with_literal_newlines_is_used_when_no_file_is_set():
    text = (SHARED_VECTORS / "test-key.pkcs8.pem").read_text().replace("\n", "\\n")
    assert load_manager_key(ManagerSettings(id="m", credentials_key=text)).key_size == 4096


def test_missing_key_is_a_configuration_error_that_says_how_to_make_one():
    with pytest.raises(ConfigurationError, match="keygen"):
        load_manager_key(ManagerSettings(id="m"))


def test_unreadable_key_file_is_a_key_error_naming_the_file(tmp_path):
    with pytest.raises(CredentialsKeyError, match=r"missing\.pem"):
        load_manager_key(ManagerSettings(id="m", credentials_key_filepath=tmp_path / "missing.pem"))


def test_keygen_writes_a_4096_bit_pkcs8_key_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "key.pem"
    result = subprocess.run(
        [sys.executable, "-m", "xtm_composer", "keygen", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text().startswith("-----BEGIN PRIVATE KEY-----")
    assert load_private_key_file(path).key_size == 4096
    again = subprocess.run(
        [sys.executable, "-m", "xtm_composer", "keygen", str(path)], capture_output=True, text=True, timeout=120
    )
    assert again.returncode != 0 and "already exists" in again.stderr


def test_keygen_creates_a_missing_directory_readable_by_its_owner_only(tmp_path):
    path = tmp_path / "etc" / "xtm-composer" / "key.pem"
    result = subprocess.run(
        [sys.executable, "-m", "xtm_composer", "keygen", str(path)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700 and stat.S_IMODE(path.stat().st_mode) == 0o600
