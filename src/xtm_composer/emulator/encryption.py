"""Hybrid encryption of secret values, done the way the platforms do it when a value is saved."""

from __future__ import annotations

import base64
import os

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from xtm_composer.crypto import AES_KEY_BYTES, IV_BYTES, OAEP_SHA256, VERSION_OAEP_SHA256, VERSION_PKCS1V15


def load_public_key(pem: str) -> rsa.RSAPublicKey:
    """Accept PKCS#1 (`BEGIN RSA PUBLIC KEY`) or SPKI (`BEGIN PUBLIC KEY`) PEM."""
    key = serialization.load_pem_public_key(pem.encode("ascii"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("public key is not RSA")
    return key


def encrypt_value(plaintext: str, public_key: rsa.RSAPublicKey, *, version: int = VERSION_PKCS1V15) -> str:
    aes_key = os.urandom(AES_KEY_BYTES)
    iv = os.urandom(IV_BYTES)
    if version not in (VERSION_PKCS1V15, VERSION_OAEP_SHA256):
        raise ValueError(f"unknown encryption version {version}")
    rsa_padding = OAEP_SHA256 if version == VERSION_OAEP_SHA256 else padding.PKCS1v15()
    wrapped = public_key.encrypt(aes_key + iv, rsa_padding)
    sealed = AESGCM(aes_key).encrypt(iv, plaintext.encode("utf-8"), None)
    return base64.b64encode(bytes([version]) + wrapped + sealed).decode("ascii")
