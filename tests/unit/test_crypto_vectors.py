"""Every platform-made test vector decrypts byte-for-byte, every invalid one is a typed error."""

from __future__ import annotations

import json

import pytest

from xtm_composer.crypto import decrypt_value, load_private_key, load_private_key_file, public_key_pkcs1_pem
from xtm_composer.emulator.encryption import encrypt_value, load_public_key
from xtm_composer.errors import DecryptionError

from ..paths import SHARED_VECTORS

VECTORS = json.loads((SHARED_VECTORS / "vectors.json").read_text())


@pytest.fixture(scope="module")
def key():
    return load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem")


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: f"v{v['version']}-{v['plaintext'][:12]!r}")
def test_valid_vector_decrypts_to_exact_plaintext(key, vector):
    assert decrypt_value(vector["blob"], key) == vector["plaintext"]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["case"])
def test_invalid_vector_raises_decryption_error(key, vector):
    with pytest.raises(DecryptionError) as info:
        decrypt_value(vector["blob"], key)
    assert str(info.value)


def test_pkcs1_private_key_decrypts_the_same_vectors():
    key = load_private_key_file(SHARED_VECTORS / "test-key.pkcs1.pem")
    for vector in VECTORS["valid"]:
        assert decrypt_value(vector["blob"], key) == vector["plaintext"]


def test_public_key_export_matches_the_platform_pkcs1_file(key):
    expected = (SHARED_VECTORS / "test-key.public.pkcs1.pem").read_text()
    assert public_key_pkcs1_pem(key).strip() == expected.strip()


@pytest.mark.parametrize(
    "mangle",
    [
        lambda pem: pem.replace("\n", "\\n"),
        lambda pem: pem.replace("\n", "\r\n"),
        lambda pem: "  " + pem.replace("\n", "\n  "),
    ],
    ids=["literal-backslash-n", "crlf", "indented"],
)
def test_key_text_mangled_by_env_values_still_loads(key, mangle):
    text = (SHARED_VECTORS / "test-key.pkcs8.pem").read_text()
    loaded = load_private_key(mangle(text), source="env")
    assert loaded.private_numbers() == key.private_numbers()


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("plaintext", ["", "s3cr3t", 'a=b=c\nline2\r\n\u00e9\u5a01\u80c1 "q" $X'])
def test_emulator_encryption_round_trips(key, version, plaintext):
    public = load_public_key(public_key_pkcs1_pem(key))
    blob = encrypt_value(plaintext, public, version=version)
    assert decrypt_value(blob, key) == plaintext
