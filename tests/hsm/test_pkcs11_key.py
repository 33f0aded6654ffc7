"""The private key in a real SoftHSM2 token: found, checked, and decrypting the shared vectors."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from xtm_composer.crypto import KeyRing
from xtm_composer.emulator.encryption import encrypt_value
from xtm_composer.errors import CredentialsKeyError, DecryptionError
from xtm_composer.pkcs11_key import open_pkcs11_key, read_pin

from ..paths import SHARED_VECTORS
from .softhsm import FRESH_KEY_LABEL, SHARED_KEY_ID

VECTORS = json.loads((SHARED_VECTORS / "vectors.json").read_text(encoding="utf-8"))


@pytest.fixture
def ring(pkcs11_settings) -> KeyRing:
    return KeyRing(open_pkcs11_key(pkcs11_settings()))


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: f"v{v['version']}-{v['plaintext'][:12]!r}")
def test_every_valid_vector_decrypts_through_the_token_in_raw_mode(ring, vector):
    assert ring.decrypt(vector["blob"]) == vector["plaintext"]


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["case"])
def test_every_invalid_vector_is_a_decryption_error(ring, vector):
    with pytest.raises(DecryptionError):
        ring.decrypt(vector["blob"])


def test_token_mode_on_softhsm_2_6_refuses_to_start_and_names_oaep_raw(softhsm, pkcs11_settings):
    # SoftHSM2 < 2.7 does RSA-OAEP with SHA-1 only (upstream SoftHSMv2 #474).
    assert softhsm.version < (2, 7), f"SoftHSM2 {softhsm.version} may do SHA-256 OAEP: test token mode for real"
    with pytest.raises(CredentialsKeyError) as caught:
        open_pkcs11_key(pkcs11_settings(oaep="token"))
    message = str(caught.value)
    assert "oaep: raw" in message and repr(softhsm.token_label) in message and "\n" not in message


def test_the_public_key_read_from_the_token_exports_as_the_shared_pem_files(ring):
    assert ring.public_key_pkcs1() == (SHARED_VECTORS / "test-key.public.pkcs1.pem").read_text()
    assert ring.public_key_spki() == (SHARED_VECTORS / "test-key.public.spki.pem").read_text()


def test_the_key_can_be_chosen_by_its_hex_id_alone(pkcs11_settings):
    key = open_pkcs11_key(pkcs11_settings(key_label=None, key_id=SHARED_KEY_ID))
    blob = encrypt_value("by id", key.public_key(), version=2)
    assert KeyRing(key).decrypt(blob) == "by id"


def test_a_keypair_generated_in_the_token_serves_as_a_previous_key_after_a_rotation(pkcs11_settings):
    settings = pkcs11_settings()
    ring = KeyRing(open_pkcs11_key(settings), [open_pkcs11_key(settings, key_label=FRESH_KEY_LABEL)])
    old_public = ring.previous[0].public_key()
    assert old_public.public_numbers() != ring.current.public_key().public_numbers()
    for version in (1, 2):
        assert ring.decrypt(encrypt_value(f"saved before, v{version}", old_public, version=version)).endswith(
            f"v{version}"
        )
    assert ring.uses == {f"pkcs11:{settings.token_label}/{FRESH_KEY_LABEL}": 2}


@pytest.mark.parametrize("version", [1, 2])
def test_a_value_encrypted_for_another_token_key_is_a_decryption_error(pkcs11_settings, ring, version):
    other = open_pkcs11_key(pkcs11_settings(), key_label=FRESH_KEY_LABEL).public_key()
    with pytest.raises(DecryptionError):
        ring.decrypt(encrypt_value("not for this key", other, version=version))


def test_decryptions_from_many_threads_at_once_all_come_out_right(ring):
    public = ring.current.public_key()
    blobs = [(f"value {i}", encrypt_value(f"value {i}", public, version=1 + i % 2)) for i in range(48)]
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda item: ring.decrypt(item[1]), blobs))
    assert results == [plain for plain, _ in blobs]


def test_an_unknown_token_label_is_named_with_the_tokens_that_exist(softhsm, pkcs11_settings):
    with pytest.raises(CredentialsKeyError, match=r"token 'no-such-token' not found .*'xtm-composer-test'"):
        open_pkcs11_key(pkcs11_settings(token_label="no-such-token"))


def test_an_unknown_key_label_is_named_with_the_keys_in_the_token(pkcs11_settings):
    with pytest.raises(CredentialsKeyError, match=r"no private key labelled 'no-such-key' .*'composer-key'"):
        open_pkcs11_key(pkcs11_settings(key_label="no-such-key"))


def test_an_unset_pin_variable_is_named_in_the_error(pkcs11_settings, monkeypatch):
    monkeypatch.delenv("XTM_TEST_UNSET_PIN", raising=False)
    with pytest.raises(CredentialsKeyError, match="environment variable XTM_TEST_UNSET_PIN is unset or empty"):
        open_pkcs11_key(pkcs11_settings(pin_file=None, pin_env="XTM_TEST_UNSET_PIN"))


@pytest.mark.parametrize(
    ("content", "pin"), [("1234\n", "1234"), ("1234\r\n", "1234"), ("1234", "1234"), ("12 34\n\n", "12 34\n")]
)
def test_a_pin_file_loses_one_trailing_newline_only(pkcs11_settings, tmp_path, content, pin):
    path = tmp_path / "pin"
    path.write_bytes(content.encode())
    assert read_pin(pkcs11_settings(pin_file=path)) == pin


def test_a_session_dropped_by_the_token_is_opened_again_and_the_value_still_decrypts(pkcs11_settings):
    key = open_pkcs11_key(pkcs11_settings())
    key._token._session.close()  # what an HSM restart does to the composer's session (and its login)
    blob = encrypt_value("after a reconnect", key.public_key(), version=1)
    assert KeyRing(key).decrypt(blob) == "after a reconnect"
