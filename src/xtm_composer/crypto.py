"""Private key loading, public key export and hybrid decryption of secret values.

Wire format (PROTOCOL.md §1): base64( version(1) ‖ RSA-4096(aes_key(32) ‖ iv(12)) (512) ‖
AES-256-GCM(plaintext) with 16-byte tag ). Version 1 uses RSA PKCS#1 v1.5, version 2 RSA-OAEP
with SHA-256 for both the OAEP hash and MGF1. Every failure raises `DecryptionError`; nothing
here can turn a bad blob into an empty string.
"""

from __future__ import annotations

import base64
import binascii
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidTag, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from xtm_composer.errors import CredentialsKeyError, DecryptionError

REQUIRED_KEY_BITS = 4096
RSA_BLOCK_BYTES = REQUIRED_KEY_BITS // 8
AES_KEY_BYTES = 32
IV_BYTES = 12
GCM_TAG_BYTES = 16
VERSION_PKCS1V15 = 0x01
VERSION_OAEP_SHA256 = 0x02

OAEP_SHA256 = padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def normalise_pem(text: str) -> bytes:
    """Undo what env vars and Windows editors do to PEM text: literal `\\n`, CRLF, indentation."""
    text = text.strip().replace("\\r\\n", "\n").replace("\\n", "\n").replace("\r\n", "\n").replace("\r", "\n")
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    return ("\n".join(lines) + "\n").encode("ascii", errors="replace")


def load_private_key(pem_text: str, *, source: str) -> rsa.RSAPrivateKey:
    """Parse a PKCS#8 or PKCS#1 PEM private key and check it is RSA-4096.

    `source` names where the key came from, for error messages (never the key itself).
    """
    if "PUBLIC KEY-----" in pem_text and "PRIVATE KEY-----" not in pem_text:
        raise CredentialsKeyError(
            f"{source}: this is a public key; the composer needs the private key (it publishes the public one itself)"
        )
    try:
        key = serialization.load_pem_private_key(normalise_pem(pem_text), password=None)
    except TypeError as exc:  # encrypted key without password
        raise CredentialsKeyError(f"{source}: the private key is password-protected; use an unencrypted PEM") from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CredentialsKeyError(
            f"{source}: not a readable PEM private key (expected 'BEGIN PRIVATE KEY' or 'BEGIN RSA PRIVATE KEY')"
        ) from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise CredentialsKeyError(f"{source}: the private key is not an RSA key")
    if key.key_size != REQUIRED_KEY_BITS:
        raise CredentialsKeyError(
            f"{source}: the RSA key has {key.key_size} bits; the platforms encrypt with a 512-byte block, "
            f"so it must be {REQUIRED_KEY_BITS} bits (xtm-composer keygen PATH makes one)"
        )
    return key


def load_private_key_file(path: Path) -> rsa.RSAPrivateKey:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsKeyError(f"cannot read the private key file {path}: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise CredentialsKeyError(f"the private key file {path} is not PEM text") from exc
    return load_private_key(text, source=str(path))


def generate_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=REQUIRED_KEY_BITS)


def private_key_pkcs8_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def public_key_pkcs1_pem(key: rsa.RSAPrivateKey) -> str:
    """Public key as OpenCTI expects it at registration (`BEGIN RSA PUBLIC KEY`)."""
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1).decode("ascii")


def public_key_spki_pem(key: rsa.RSAPrivateKey) -> str:
    """Public key as OpenAEV expects it at registration (`BEGIN PUBLIC KEY`)."""
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )


class KeyHandle(Protocol):
    """An RSA-4096 private key the composer can use, wherever it lives (memory, PKCS#11 token)."""

    label: str  # where it comes from, for messages and counters (never key material)

    def public_key(self) -> rsa.RSAPublicKey: ...

    def unwrap(self, version: int, block: bytes) -> bytes:
        """RSA-decrypt the 512-byte block of a blob; raise ValueError when it does not decrypt."""
        ...


class SoftwareKey:
    """A private key held in this process's memory (from a file or the configuration)."""

    def __init__(self, key: rsa.RSAPrivateKey, *, label: str = "private key") -> None:
        self._key = key
        self.label = label

    def public_key(self) -> rsa.RSAPublicKey:
        return self._key.public_key()

    def unwrap(self, version: int, block: bytes) -> bytes:
        return self._key.decrypt(block, OAEP_SHA256 if version == VERSION_OAEP_SHA256 else padding.PKCS1v15())

    def __repr__(self) -> str:
        return f"SoftwareKey(label={self.label!r})"


@dataclass(frozen=True, slots=True)
class ParsedBlob:
    version: int
    rsa_block: bytes
    sealed: bytes  # AES-GCM ciphertext with its tag


def parse_blob(blob: str) -> ParsedBlob:
    """Check the wire format; a malformed blob is an error whatever the key."""
    try:
        raw = base64.b64decode(blob.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptionError("value is not valid base64") from exc
    header = 1 + RSA_BLOCK_BYTES
    if len(raw) < header + GCM_TAG_BYTES:
        raise DecryptionError(f"value is too short ({len(raw)} bytes) to be an encrypted blob")
    version = raw[0]
    if version not in (VERSION_PKCS1V15, VERSION_OAEP_SHA256):
        raise DecryptionError(f"unknown encryption version byte {version}")
    return ParsedBlob(version=version, rsa_block=raw[1:header], sealed=raw[header:])


def decrypt_with(parsed: ParsedBlob, key: KeyHandle) -> str:
    try:
        key_material = key.unwrap(parsed.version, parsed.rsa_block)
    except ValueError as exc:
        raise DecryptionError(f"RSA decryption failed (version {parsed.version}; wrong key?)") from exc
    if len(key_material) != AES_KEY_BYTES + IV_BYTES:
        # With PKCS#1 v1.5 implicit rejection, a wrong key yields random bytes of random length.
        raise DecryptionError(f"RSA block holds {len(key_material)} bytes, expected 44 (wrong key?)")
    aes_key, iv = key_material[:AES_KEY_BYTES], key_material[AES_KEY_BYTES:]
    try:
        plaintext = AESGCM(aes_key).decrypt(iv, parsed.sealed, None)
    except InvalidTag as exc:
        raise DecryptionError("AES-GCM authentication failed (tampered value or wrong key)") from exc
    try:
        return plaintext.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DecryptionError("decrypted value is not UTF-8 text") from exc


def decrypt_value(blob: str, key: rsa.RSAPrivateKey) -> str:
    """Decrypt one hybrid-encrypted value. Raises DecryptionError with a reason, never the value."""
    return decrypt_with(parse_blob(blob), SoftwareKey(key))


class KeyRing:
    """The current key (registered with the platforms) and the previous ones (rotation).

    Values are encrypted once, when saved, with the key registered then: after a rotation the
    platform still holds values under an old key. Decryption tries the current key first, then
    each previous key; `uses` counts which key opened how many values, so an admin knows when a
    previous key can be retired.
    """

    def __init__(self, current: KeyHandle, previous: Sequence[KeyHandle] = ()) -> None:
        self.current = current
        self.previous = tuple(previous)
        self.uses: Counter[str] = Counter()

    @classmethod
    def of(cls, key: rsa.RSAPrivateKey | KeyRing) -> KeyRing:
        return key if isinstance(key, KeyRing) else cls(SoftwareKey(key))

    def public_key_pkcs1(self) -> str:
        return public_pem(self.current.public_key(), serialization.PublicFormat.PKCS1)

    def public_key_spki(self) -> str:
        return public_pem(self.current.public_key(), serialization.PublicFormat.SubjectPublicKeyInfo)

    def decrypt(self, blob: str) -> str:
        parsed = parse_blob(blob)
        first_error: DecryptionError | None = None
        for key in (self.current, *self.previous):
            try:
                value = decrypt_with(parsed, key)
            except DecryptionError as exc:
                first_error = first_error or exc
                continue
            self.uses[key.label] += 1
            return value
        assert first_error is not None
        if self.previous:
            raise DecryptionError(f"{first_error} (also tried {len(self.previous)} previous key(s))")
        raise first_error


def public_pem(key: rsa.RSAPublicKey, fmt: serialization.PublicFormat) -> str:
    return key.public_bytes(serialization.Encoding.PEM, fmt).decode("ascii")
