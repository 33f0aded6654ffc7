"""The composer's private key inside a PKCS#11 token (an HSM, SoftHSM2): it never leaves the token.

`open_pkcs11_key` logs in to the token, finds the RSA-4096 private key by label and/or id, reads the
public key from the token (the public key object with the same label/id, else the private key's
public attributes) and checks, with one decryption of each kind, that the token opens what that
public key encrypts. The returned `Pkcs11Key` is a `KeyHandle`:

- v1 blocks (RSA PKCS#1 v1.5) go through the token's CKM_RSA_PKCS;
- v2 blocks (RSA-OAEP, SHA-256 and MGF1-SHA-256, empty label) go through the token's
  CKM_RSA_PKCS_OAEP (`oaep: token`, the default), or, behind the explicit `oaep: raw`, through the
  token's raw RSA (CKM_RSA_X_509) with the OAEP decoding done here by `decode_oaep_sha256`: for
  tokens that only do OAEP with SHA-1 (SoftHSM2 2.6, upstream SoftHSMv2 #474). docs/pkcs11.md has
  the trade-off.

Sessions: PKCS#11 login state belongs to the process, not to a session (a second C_Login fails and a
C_Logout logs every session out), so the keys of one token (current and previous ones) share one
logged-in session. python-pkcs11 sessions must not be used from two threads at once, the library is
initialised without locking, and the executor decrypts from worker threads: every call into a
module holds that module's lock. A session the token
dropped (HSM restart, network HSM reconnect) is opened again once, with the PIN read again.

The PIN comes from the environment variable or the file named in the settings. It is never logged,
never kept after the login and never part of a message: errors name the token, the key and the
setting to fix.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pkcs11
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pkcs11 import MGF, Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11

from xtm_composer.config.settings import Pkcs11Settings
from xtm_composer.crypto import (
    AES_KEY_BYTES,
    IV_BYTES,
    OAEP_SHA256,
    REQUIRED_KEY_BITS,
    VERSION_OAEP_SHA256,
    VERSION_PKCS1V15,
)
from xtm_composer.errors import ConfigurationError, CredentialsKeyError
from xtm_composer.observability import get_logger

log = get_logger(__name__)

T = TypeVar("T")

SETTING = "manager.credentials_key_pkcs11"
RAW_OAEP_HINT = (
    f"set {SETTING}.oaep: raw (MANAGER__CREDENTIALS_KEY_PKCS11__OAEP=raw) to let the composer decode OAEP "
    "itself with the token's raw RSA, or use a token with SHA-256 OAEP (see docs/pkcs11.md)"
)

# What a token answers when the block does not decrypt under this key (bad padding, wrong key).
# SoftHSM2 reports a bad PKCS#1 v1.5 padding as CKR_GENERAL_ERROR.
_BAD_BLOCK = (
    p11.EncryptedDataInvalid,
    p11.EncryptedDataLenRange,
    p11.DataInvalid,
    p11.DataLenRange,
    p11.GeneralError,
    p11.FunctionFailed,
)
# What a token answers when it will not run this mechanism (or these parameters) with this key.
# SoftHSM2 2.6 answers CKR_ARGUMENTS_BAD to OAEP with SHA-256.
_REFUSED = (
    p11.MechanismInvalid,
    p11.MechanismParamInvalid,
    p11.ArgumentsBad,
    p11.FunctionNotSupported,
    p11.KeyTypeInconsistent,
)
# The session is gone: log in again and retry once.
_SESSION_LOST = (
    p11.SessionClosed,
    p11.SessionHandleInvalid,
    p11.DeviceRemoved,
    p11.TokenNotPresent,
    p11.UserNotLoggedIn,
    p11.ObjectHandleInvalid,
    p11.KeyHandleInvalid,
)

_OAEP_SHA256_PARAMS = (Mechanism.SHA256, MGF.SHA256, None)  # hash, MGF1 hash, label (none)
_SHA256_BYTES = 32
_EMPTY_LABEL_HASH = hashlib.sha256(b"").digest()


# -- OAEP decoding on the host (oaep: raw) -------------------------------------------------------


def _mgf1_sha256(seed: bytes, length: int) -> bytes:
    blocks = (length + _SHA256_BYTES - 1) // _SHA256_BYTES
    mask = b"".join(hashlib.sha256(seed + counter.to_bytes(4, "big")).digest() for counter in range(blocks))
    return mask[:length]


def _xor(left: bytes, right: bytes) -> bytes:
    return (int.from_bytes(left, "big") ^ int.from_bytes(right, "big")).to_bytes(len(left), "big")


def decode_oaep_sha256(encoded: bytes, *, modulus_bytes: int) -> bytes:
    """EME-OAEP decoding (RFC 8017 §7.1.2, step 3), SHA-256 for the hash and MGF1, empty label.

    `encoded` is the raw RSA output, `modulus_bytes` long. Every check (leading zero byte, label
    hash, zero padding, 0x01 separator) is computed without an early exit or a branch on the data
    and the results are combined: any failure is the same single ValueError, so nothing tells which
    check failed (Manger's attack needs exactly that). Best effort against timing in Python: the
    work done does not depend on where the block is wrong.
    """
    h = _SHA256_BYTES
    if modulus_bytes < 2 * h + 2 or len(encoded) != modulus_bytes:
        raise ValueError("OAEP decoding error")  # lengths are public: no secret in this branch
    leading = encoded[0]
    masked_seed, masked_db = encoded[1 : 1 + h], encoded[1 + h :]
    seed = _xor(masked_seed, _mgf1_sha256(masked_db, h))
    db = _xor(masked_db, _mgf1_sha256(seed, modulus_bytes - h - 1))

    good = int(hmac.compare_digest(db[:h], _EMPTY_LABEL_HASH))
    good &= ((leading - 1) >> 8) & 1  # 1 iff leading == 0 (bytes are 0..255)
    found = 0  # the 0x01 separator was seen
    invalid = 0  # a byte other than 0x00 came before it
    index = 0  # position of the separator after the label hash
    for position, byte in enumerate(db[h:]):
        is_zero = ((byte - 1) >> 8) & 1
        is_one = (((byte ^ 1) - 1) >> 8) & 1
        looking = found ^ 1
        index |= -(looking & is_one) & position
        invalid |= looking & (is_zero ^ 1) & (is_one ^ 1)
        found |= is_one
    good &= found & (invalid ^ 1)
    if not good:
        raise ValueError("OAEP decoding error")
    return db[h + index + 1 :]


# -- the PIN -------------------------------------------------------------------------------------


def read_pin(settings: Pkcs11Settings) -> str:
    """The user PIN from `pin_file` (one trailing newline dropped) or `pin_env`. Never logged."""
    if settings.pin_file is not None:
        if settings.pin_env:
            log.warning(f"both {SETTING}.pin_file and .pin_env are set: using the file", path=str(settings.pin_file))
        pin = _read_pin_file(settings.pin_file)
        where = f"{SETTING}.pin_file: {settings.pin_file}"
    else:
        name = settings.pin_env or ""
        pin = os.environ.get(name, "")
        where = f"{SETTING}.pin_env: the environment variable {name}"
    if not pin:
        raise CredentialsKeyError(f"{where} is unset or empty; it must hold the user PIN of token {_q(settings)}")
    return pin


def _read_pin_file(path: Path) -> str:
    from xtm_composer.keys import key_file_mode_problem  # keys imports this module lazily: no cycle

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CredentialsKeyError(f"{SETTING}.pin_file: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise CredentialsKeyError(f"{SETTING}.pin_file: {path} is not UTF-8 text") from None
    problem = key_file_mode_problem(path)
    if problem:
        log.warning("PIN file permissions too open", detail=problem)
    if text.endswith("\r\n"):
        return text[:-2]
    return text.removesuffix("\n")


def _q(settings: Pkcs11Settings) -> str:
    return repr(settings.token_label)


def _describe(exc: BaseException) -> str:
    """A one-line description of a PKCS#11 error (its class, and its text when it has one)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# -- one logged-in session per token ---------------------------------------------------------------


class _TokenSession:
    """The one logged-in session to one token, shared by the keys in it and used under a lock."""

    def __init__(self, settings: Pkcs11Settings, *, lock: threading.Lock) -> None:
        self._settings = settings
        self.token_label = settings.token_label
        self._lock = lock
        self._session: Any = None

    def log_in(self, settings: Pkcs11Settings) -> None:
        """Log in now (start-up errors belong to start-up); when already logged in, still check the PIN source.

        The newest settings are the ones used to log in again after the token dropped the session.
        """
        with self._lock:
            self._settings = settings
            if self._session is None:
                self._session = self._login()
            else:
                read_pin(self._settings)  # a PIN source gone missing is a configuration error all the same

    def call(self, operation: Callable[[Any], T]) -> T:
        with self._lock:
            if self._session is None:
                self._session = self._login()
            try:
                return operation(self._session)
            except _SESSION_LOST as exc:
                log.warning("PKCS#11 session lost: logging in again", token=self.token_label, error=_describe(exc))
                self._session = None
                self._session = self._login()
                return operation(self._session)

    def _login(self) -> Any:
        settings = self._settings
        token = _find_token(settings)
        pin = read_pin(settings)
        pin_source = f"{SETTING}.pin_file ({settings.pin_file})" if settings.pin_file else f"${settings.pin_env}"
        try:
            return token.open(user_pin=pin)
        except p11.UserAlreadyLoggedIn:
            # Something else in this process logged in to this token: the login is shared anyway.
            return token.open()
        except p11.PinIncorrect:
            raise CredentialsKeyError(
                f"PKCS#11 token {_q(settings)}: the user PIN is incorrect; check {pin_source} "
                "(tokens lock the PIN after a few wrong tries)"
            ) from None
        except p11.PinLocked:
            raise CredentialsKeyError(
                f"PKCS#11 token {_q(settings)}: the user PIN is locked; unlock it with the SO PIN"
            ) from None
        except (p11.PinExpired, p11.PinInvalid, p11.PinLenRange) as exc:
            raise CredentialsKeyError(
                f"PKCS#11 token {_q(settings)} refused the PIN from {pin_source} ({type(exc).__name__})"
            ) from None
        except p11.UserPinNotInitialized:
            raise CredentialsKeyError(
                f"PKCS#11 token {_q(settings)} has no user PIN yet: initialise the token first"
            ) from None
        except p11.PKCS11Error as exc:
            raise CredentialsKeyError(f"cannot log in to PKCS#11 token {_q(settings)}: {_describe(exc)}") from None


def _load_library(module: Path) -> Any:
    if not module.is_file():
        raise CredentialsKeyError(
            f"{SETTING}.module: {module} does not exist "
            "(the token's PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so)"
        )
    try:
        return pkcs11.lib(str(module))
    except p11.PKCS11Error as exc:
        raise CredentialsKeyError(f"{SETTING}.module: cannot load {module}: {_describe(exc)}") from None


def _find_token(settings: Pkcs11Settings) -> Any:
    library = _load_library(settings.module)
    try:
        return library.get_token(token_label=settings.token_label)
    except p11.NoSuchToken:
        pass
    except p11.MultipleTokensReturned:
        raise CredentialsKeyError(
            f"several PKCS#11 tokens are labelled {_q(settings)} in {settings.module}: give each a unique label"
        ) from None
    except p11.PKCS11Error as exc:
        raise CredentialsKeyError(f"cannot list the tokens of {settings.module}: {_describe(exc)}") from None
    try:
        labels = sorted({t.label for t in library.get_tokens() if t.label})
    except p11.PKCS11Error:
        labels = []
    where = ""
    if "softhsm" in settings.module.name.lower():
        conf = os.environ.get("SOFTHSM2_CONF") or "/etc/softhsm/softhsm2.conf"
        where = f"; SoftHSM2 reads its tokens from directories.tokendir of {conf}"
    raise CredentialsKeyError(
        f"PKCS#11 token {_q(settings)} not found in {settings.module} "
        f"(tokens there: {', '.join(map(repr, labels)) or 'none'}); check {SETTING}.token_label{where}"
    )


# One session per (module, token) for the whole process, and one lock per module: python-pkcs11
# initialises the library with C_Initialize(NULL), which promises it no concurrent calls at all.
_sessions: dict[tuple[str, str], _TokenSession] = {}
_module_locks: dict[str, threading.Lock] = {}
_registry_lock = threading.Lock()


def _token_session(settings: Pkcs11Settings) -> _TokenSession:
    module = str(settings.module.resolve())
    with _registry_lock:
        session = _sessions.get((module, settings.token_label))
        if session is None:
            lock = _module_locks.setdefault(module, threading.Lock())
            session = _sessions[(module, settings.token_label)] = _TokenSession(settings, lock=lock)
        return session


# -- the key -------------------------------------------------------------------------------------


class Pkcs11Key:
    """An RSA-4096 private key in a PKCS#11 token; a `KeyHandle`. Only ciphertexts go in and out."""

    def __init__(self, token: _TokenSession, *, key_label: str | None, key_id: bytes | None, raw_oaep: bool) -> None:
        self._token = token
        self._key_label = key_label
        self._key_id = key_id
        self._raw_oaep = raw_oaep
        self._selector: dict[Attribute, Any] = {}
        if key_label:
            self._selector[Attribute.LABEL] = key_label
        if key_id:
            self._selector[Attribute.ID] = key_id
        name = key_label if key_label else f"id={key_id.hex() if key_id else ''}"
        self.label = f"pkcs11:{token.token_label}/{name}"
        self._described = f"key {name!r} in PKCS#11 token {token.token_label!r}"
        self._cached: tuple[Any, Any] | None = None  # (session, private key object of that session)
        self._public: rsa.RSAPublicKey | None = None

    def __repr__(self) -> str:
        return f"Pkcs11Key(label={self.label!r}, oaep={'raw' if self._raw_oaep else 'token'!r})"

    def public_key(self) -> rsa.RSAPublicKey:
        if self._public is None:
            self._public = self._token.call(self._read_public_key)
        return self._public

    def unwrap(self, version: int, block: bytes) -> bytes:
        if version == VERSION_PKCS1V15:
            return self._decrypt(
                block,
                Mechanism.RSA_PKCS,
                None,
                what="RSA PKCS#1 v1.5 decryption (CKM_RSA_PKCS)",
                fix="v1 values need it: allow CKM_RSA_PKCS decryption for this key",
            )
        if version != VERSION_OAEP_SHA256:
            raise ValueError(f"unknown encryption version {version}")
        if not self._raw_oaep:
            return self._decrypt(
                block,
                Mechanism.RSA_PKCS_OAEP,
                _OAEP_SHA256_PARAMS,
                what="RSA-OAEP with SHA-256 (CKM_RSA_PKCS_OAEP)",
                fix=f"v2 values need it: {RAW_OAEP_HINT}",
            )
        modulus_bytes = (self.public_key().key_size + 7) // 8
        encoded = self._decrypt(
            block,
            Mechanism.RSA_X_509,
            None,
            what="raw RSA (CKM_RSA_X_509)",
            fix=f"{SETTING}.oaep: raw needs it: set oaep: token and use a token with SHA-256 OAEP",
        )
        if len(encoded) > modulus_bytes:
            raise ValueError("raw RSA output longer than the modulus")
        # Some tokens drop the leading zero bytes of the raw RSA output (I2OSP puts them back).
        return decode_oaep_sha256(encoded.rjust(modulus_bytes, b"\0"), modulus_bytes=modulus_bytes)

    # -- token operations (run under the token's lock) ----------------------------------------

    def _decrypt(self, block: bytes, mechanism: Mechanism, parameter: Any, *, what: str, fix: str) -> bytes:
        def operation(session: Any) -> bytes:
            key = self._private_key(session)
            try:
                return bytes(key.decrypt(block, mechanism=mechanism, mechanism_param=parameter))
            except _BAD_BLOCK as exc:
                raise _BadBlock from exc

        try:
            return self._token.call(operation)
        except _BadBlock:
            raise ValueError("the token could not decrypt the block with this key") from None
        except _REFUSED as exc:
            raise CredentialsKeyError(f"{self._described} refuses {what} ({type(exc).__name__}); {fix}") from None
        except _SESSION_LOST as exc:
            raise CredentialsKeyError(f"{self._described}: the token is unavailable ({_describe(exc)})") from None
        except p11.PKCS11Error as exc:
            # e.g. CKR_KEY_FUNCTION_NOT_PERMITTED (0x68), which python-pkcs11 leaves unmapped.
            raise CredentialsKeyError(f"{self._described}: the token failed to decrypt ({_describe(exc)})") from None

    def _private_key(self, session: Any) -> Any:
        if self._cached is not None and self._cached[0] is session:
            return self._cached[1]
        found = list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY, **self._selector}))
        if not found:
            labels = sorted(
                {str(o[Attribute.LABEL]) for o in session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})}
            )
            raise CredentialsKeyError(
                f"no private key {self._selector_text()} in PKCS#11 token {self._token.token_label!r} "
                f"(private keys there: {', '.join(map(repr, labels)) or 'none'}); check {SETTING}.key_label / .key_id"
            )
        if len(found) > 1:
            raise CredentialsKeyError(
                f"{len(found)} private keys match {self._selector_text()} in PKCS#11 token "
                f"{self._token.token_label!r}: set {SETTING}.key_id as well, or give the keys unique labels"
            )
        key = found[0]
        if key.key_type != KeyType.RSA:
            raise CredentialsKeyError(f"{self._described} is not an RSA key")
        if not hasattr(key, "decrypt"):
            raise CredentialsKeyError(f"{self._described} may not decrypt (CKA_DECRYPT is false)")
        self._cached = (session, key)
        return key

    def _read_public_key(self, session: Any) -> rsa.RSAPublicKey:
        private = self._private_key(session)
        publics = list(session.get_objects({Attribute.CLASS: ObjectClass.PUBLIC_KEY, **self._selector}))
        source = publics[0] if len(publics) == 1 and publics[0].key_type == KeyType.RSA else private
        try:
            modulus = int.from_bytes(source[Attribute.MODULUS], "big")
            exponent = int.from_bytes(source[Attribute.PUBLIC_EXPONENT], "big")
        except (p11.AttributeTypeInvalid, p11.AttributeSensitive):
            raise CredentialsKeyError(
                f"{self._described}: the token holds no public key object with the same label/id and the private "
                "key does not show its modulus and public exponent; import the public key into the token too"
            ) from None
        if modulus.bit_length() != REQUIRED_KEY_BITS:
            raise CredentialsKeyError(
                f"{self._described} has {modulus.bit_length()} bits; the platforms encrypt with a 512-byte block, "
                f"so it must be {REQUIRED_KEY_BITS} bits"
            )
        return rsa.RSAPublicNumbers(exponent, modulus).public_key()

    def _selector_text(self) -> str:
        parts = []
        if self._key_label:
            parts.append(f"labelled {self._key_label!r}")
        if self._key_id:
            parts.append(f"with id {self._key_id.hex()}")
        return " and ".join(parts)

    # -- start-up check ----------------------------------------------------------------------

    def self_test(self) -> None:
        """Decrypt one v1 and one v2 block made with the token's public key, as the platforms make them."""
        public = self.public_key()
        secret = os.urandom(AES_KEY_BYTES + IV_BYTES)
        for version, block in (
            (VERSION_PKCS1V15, public.encrypt(secret, padding.PKCS1v15())),
            (VERSION_OAEP_SHA256, public.encrypt(secret, OAEP_SHA256)),
        ):
            try:
                opened = self.unwrap(version, block)
            except ValueError:
                opened = b""
            if not hmac.compare_digest(opened, secret):
                raise CredentialsKeyError(
                    f"{self._described} does not decrypt what its public key encrypts (v{version} test); "
                    "does the public key object with that label/id belong to another key?"
                )
        if self._raw_oaep and self._token_does_sha256_oaep(public):
            log.warning(
                f"{self._described} supports RSA-OAEP with SHA-256: {SETTING}.oaep: raw is not needed; "
                "set oaep: token to keep the OAEP padding check inside the token"
            )

    def _token_does_sha256_oaep(self, public: rsa.RSAPublicKey) -> bool:
        block = public.encrypt(os.urandom(AES_KEY_BYTES + IV_BYTES), OAEP_SHA256)
        try:
            self._decrypt(block, Mechanism.RSA_PKCS_OAEP, _OAEP_SHA256_PARAMS, what="", fix="")
        except (ValueError, CredentialsKeyError):
            return False
        return True


class _BadBlock(Exception):
    """The token answered that the block does not decrypt (kept apart from session loss)."""


def _parse_key_id(value: str | None) -> bytes | None:
    if not value:
        return None
    try:
        return bytes.fromhex(value.removeprefix("0x").replace(":", ""))
    except ValueError:
        raise ConfigurationError(f"{SETTING}.key_id: {value!r} is not hexadecimal (e.g. 01 or a1b2c3)") from None


def open_pkcs11_key(settings: Pkcs11Settings, *, key_label: str | None = None) -> Pkcs11Key:
    """The private key in the token, checked: logged in, found, 4096 bits, decrypting v1 and v2 blocks.

    `key_label` overrides `settings.key_label` (and then `settings.key_id` is not used): previous
    keys after a rotation live in the same token under their own label. Raises CredentialsKeyError
    (or ConfigurationError for a malformed key_id) with a one-line message.
    """
    key_id = None if key_label else _parse_key_id(settings.key_id)
    label = key_label or settings.key_label
    token = _token_session(settings)
    token.log_in(settings)
    key = Pkcs11Key(token, key_label=label, key_id=key_id, raw_oaep=settings.oaep == "raw")
    key.self_test()
    log.info("private key in a PKCS#11 token", key=key.label, oaep=settings.oaep)
    return key
