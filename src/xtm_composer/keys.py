"""Where the private key comes from: a file (preferred) or an inline value."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from xtm_composer.config.settings import ManagerSettings
from xtm_composer.crypto import (
    KeyHandle,
    KeyRing,
    SoftwareKey,
    generate_private_key,
    load_private_key,
    load_private_key_file,
    private_key_pkcs8_pem,
)
from xtm_composer.errors import ConfigurationError, CredentialsKeyError
from xtm_composer.observability import get_logger

log = get_logger(__name__)


def key_file_mode_problem(path: Path) -> str | None:
    """A sentence when the key file can be read by group or others, else None."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None  # reading it will fail with a clearer message
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        return f"{path} is accessible by group or others (mode {mode:04o}); run: chmod 600 {path}"
    return None


def load_manager_key(manager: ManagerSettings) -> RSAPrivateKey:
    if manager.credentials_key_filepath is not None:
        path = manager.credentials_key_filepath
        if manager.credentials_key:
            log.warning(
                "both manager.credentials_key and manager.credentials_key_filepath are set: using the file",
                path=str(path),
            )
        problem = key_file_mode_problem(path)
        if problem and manager.strict_key_permissions:
            raise CredentialsKeyError(f"{problem} (refused: manager.strict_key_permissions is true)")
        if problem:
            log.warning("private key file permissions too open", detail=problem)
        return load_private_key_file(path)
    if manager.credentials_key:
        return load_private_key(manager.credentials_key, source="manager.credentials_key")
    raise ConfigurationError(
        "manager.credentials_key_filepath (or manager.credentials_key): a 4096-bit RSA private key is required; "
        "create one with `xtm-composer keygen PATH`"
    )


def load_previous_key(entry: str, manager: ManagerSettings) -> KeyHandle:
    if entry.startswith("pkcs11:"):
        if manager.credentials_key_pkcs11 is None:
            raise ConfigurationError(f"manager.credentials_previous_keys: {entry} needs manager.credentials_key_pkcs11")
        from xtm_composer.pkcs11_key import open_pkcs11_key

        return open_pkcs11_key(manager.credentials_key_pkcs11, key_label=entry.removeprefix("pkcs11:"))
    path = Path(entry)
    return SoftwareKey(load_private_key_file(path), label=str(path))


def load_keyring(manager: ManagerSettings) -> KeyRing:
    """The current key (PKCS#11 token, file or inline value) and the previous ones."""
    if manager.credentials_key_pkcs11 is not None:
        from xtm_composer.pkcs11_key import open_pkcs11_key

        current: KeyHandle = open_pkcs11_key(manager.credentials_key_pkcs11)
    else:
        source = (
            str(manager.credentials_key_filepath) if manager.credentials_key_filepath else "manager.credentials_key"
        )
        current = SoftwareKey(load_manager_key(manager), label=source)
    previous = [load_previous_key(entry, manager) for entry in manager.credentials_previous_keys]
    return KeyRing(current, previous)


def write_new_key(path: Path, *, overwrite: bool = False) -> RSAPrivateKey:
    """Write a fresh RSA-4096 PKCS#8 key, readable by its owner only (mode 0600 from creation)."""
    key = generate_private_key()
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, stat.S_IRUSR | stat.S_IWUSR)
    except FileExistsError:
        raise CredentialsKeyError(f"{path} already exists (use --force to replace it)") from None
    except OSError as exc:
        raise CredentialsKeyError(f"cannot write {path}: {exc.strerror or exc}") from None
    with os.fdopen(fd, "wb") as handle:
        os.fchmod(handle.fileno(), 0o600)  # O_CREAT's mode does not apply to an existing file
        handle.write(private_key_pkcs8_pem(key))
    return key
