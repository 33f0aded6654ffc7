"""The host-side OAEP decoding used with `oaep: raw` (RFC 8017 §7.1.2, SHA-256, empty label)."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from xtm_composer.crypto import OAEP_SHA256, RSA_BLOCK_BYTES, load_private_key
from xtm_composer.pkcs11_key import decode_oaep_sha256

from ..paths import SHARED_VECTORS

K = RSA_BLOCK_BYTES


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return load_private_key((SHARED_VECTORS / "test-key.pkcs8.pem").read_text(), source="test key")


def raw_rsa(key: rsa.RSAPrivateKey, ciphertext: bytes) -> bytes:
    """What a token's CKM_RSA_X_509 returns: c^d mod n as k bytes (computed with the CRT)."""
    n = key.private_numbers()
    c = int.from_bytes(ciphertext, "big")
    m1, m2 = pow(c, n.dmp1, n.p), pow(c, n.dmq1, n.q)
    m = m2 + n.q * ((n.iqmp * (m1 - m2)) % n.p)
    return m.to_bytes(K, "big")


def encoded_for(key: rsa.RSAPrivateKey, message: bytes) -> bytes:
    return raw_rsa(key, key.public_key().encrypt(message, OAEP_SHA256))


@pytest.mark.parametrize("length", [0, 1, 44, K - 2 * 32 - 2])
def test_decoding_returns_what_cryptography_encrypted_with_oaep_sha256(key, length):
    message = os.urandom(length)
    assert decode_oaep_sha256(encoded_for(key, message), modulus_bytes=K) == message


def test_a_message_starting_with_zero_and_one_bytes_survives_the_separator_search(key):
    message = b"\x00\x01\x00\x01" + os.urandom(40)
    assert decode_oaep_sha256(encoded_for(key, message), modulus_bytes=K) == message


def flip(data: bytes, index: int, mask: int = 0x01) -> bytes:
    return data[:index] + bytes([data[index] ^ mask]) + data[index + 1 :]


def test_a_nonzero_leading_byte_is_rejected(key):
    encoded = encoded_for(key, b"k" * 44)
    with pytest.raises(ValueError, match=r"^OAEP decoding error$"):
        decode_oaep_sha256(flip(encoded, 0), modulus_bytes=K)


def test_a_block_encrypted_with_a_non_empty_label_is_rejected(key):
    labelled = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=b"other label")
    encoded = raw_rsa(key, key.public_key().encrypt(b"k" * 44, labelled))
    with pytest.raises(ValueError, match=r"^OAEP decoding error$"):
        decode_oaep_sha256(encoded, modulus_bytes=K)


def mgf1(seed: bytes, length: int) -> bytes:
    out = b"".join(hashlib.sha256(seed + i.to_bytes(4, "big")).digest() for i in range(length // 32 + 1))
    return out[:length]


def xor(a: bytes, b: bytes) -> bytes:
    return bytes(x ^ y for x, y in zip(a, b, strict=True))


def masked(db: bytes, seed: bytes) -> bytes:
    """OAEP's masking of a hand-made DB (RFC 8017 §7.1.1 steps 2.f-2.i), to build malformed blocks."""
    masked_db = xor(db, mgf1(seed, len(db)))
    return b"\x00" + xor(seed, mgf1(masked_db, 32)) + masked_db


def make_db(ps: bytes, message: bytes) -> bytes:
    return hashlib.sha256(b"").digest() + ps + message


def test_a_well_formed_hand_made_block_decodes(key):
    # `masked` and `make_db` are right: each malformed block below differs from this one in one property.
    message = b"m" * 44
    db = make_db(b"\x00" * (K - 2 * 32 - 2 - 44) + b"\x01", message)
    assert decode_oaep_sha256(masked(db, os.urandom(32)), modulus_bytes=K) == message


def test_a_nonzero_byte_in_the_padding_is_rejected():
    message = b"m" * 44
    ps = bytearray(b"\x00" * (K - 2 * 32 - 2 - 44) + b"\x01")
    ps[10] = 0x02
    with pytest.raises(ValueError, match=r"^OAEP decoding error$"):
        decode_oaep_sha256(masked(make_db(bytes(ps), message), os.urandom(32)), modulus_bytes=K)


def test_a_block_without_the_01_separator_is_rejected():
    db = make_db(b"\x00" * (K - 32 - 1 - 32), b"")
    with pytest.raises(ValueError, match=r"^OAEP decoding error$"):
        decode_oaep_sha256(masked(db, os.urandom(32)), modulus_bytes=K)


@pytest.mark.parametrize("length", [K - 1, K + 1])
def test_a_block_of_the_wrong_length_is_rejected(key, length):
    encoded = encoded_for(key, b"k" * 44)
    with pytest.raises(ValueError, match=r"^OAEP decoding error$"):
        decode_oaep_sha256(encoded[:length].ljust(length, b"\0"), modulus_bytes=K)


def test_a_pkcs1_v15_block_is_not_taken_for_oaep(key):
    encoded = raw_rsa(key, key.public_key().encrypt(b"k" * 44, padding.PKCS1v15()))
    with pytest.raises(ValueError, match=r"^OAEP decoding error$"):
        decode_oaep_sha256(encoded, modulus_bytes=K)
