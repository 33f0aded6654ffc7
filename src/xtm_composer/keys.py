"""Where the private key comes from: a file (preferred) or an inline value."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from xtm_composer.config.settings import ManagerSettings
from xtm_composer.crypto import generate_private_key, load_private_key, load_private_key_file, private_key_pkcs8_pem
from xtm_composer.errors import ConfigurationError, CredentialsKeyError
from xtm_composer.observability import get_logger

log = get_logger(__name__)


def load_manager_key(manager: ManagerSettings) -> RSAPrivateKey:
    if manager.credentials_key_filepath is not None:
        if manager.credentials_key:
            log.warning(
                "both manager.credentials_key and manager.credentials_key_filepath are set: using the file",
                path=str(manager.credentials_key_filepath),
            )
        return load_private_key_file(manager.credentials_key_filepath)
    if manager.credentials_key:
        return load_private_key(manager.credentials_key, source="manager.credentials_key")
    raise ConfigurationError(
        "manager.credentials_key_filepath (or manager.credentials_key): a 4096-bit RSA private key is required; "
        "create one with `xtm-composer keygen PATH`"
    )


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
