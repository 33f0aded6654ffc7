"""Where the private key comes from: a file (preferred) or an inline value."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
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
from xtm_composer.errors import ComposerError, ConfigurationError, CredentialsKeyError
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


def previous_keys_directory(key_path: Path) -> Path:
    """Where `keys rotate` keeps the keys it replaced: `<key file>.previous/`."""
    return key_path.with_name(key_path.name + ".previous")


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

        if manager.credentials_key_filepath is not None or manager.credentials_key:
            log.warning("a PKCS#11 key and a key file or inline key are both set: using the PKCS#11 token")
        current: KeyHandle = open_pkcs11_key(manager.credentials_key_pkcs11)
    else:
        source = (
            str(manager.credentials_key_filepath) if manager.credentials_key_filepath else "manager.credentials_key"
        )
        current = SoftwareKey(load_manager_key(manager), label=source)
    previous = [load_previous_key(entry, manager) for entry in manager.credentials_previous_keys]
    if manager.credentials_key_filepath is not None:
        rotated = previous_keys_directory(manager.credentials_key_filepath)
        # Newest first: values saved just before the last rotation are the most common.
        for path in sorted(rotated.glob("*.pem"), reverse=True) if rotated.is_dir() else []:
            previous.append(SoftwareKey(load_private_key_file(path), label=str(path)))
    return KeyRing(current, previous)


class KeySource:
    """The key ring, read again when its files change (a rotation), so that a running composer
    registers its new public key without a restart. A reload that fails keeps the keys in use."""

    def __init__(self, manager: ManagerSettings) -> None:
        self._manager = manager
        self._stamp = self._files_stamp()
        self._ring = load_keyring(manager)
        self.generation = 0

    def _files_stamp(self) -> tuple[tuple[str, int, int], ...]:
        path = self._manager.credentials_key_filepath
        if path is None:
            return ()
        candidates = [path]
        rotated = previous_keys_directory(path)
        if rotated.is_dir():
            candidates.extend(sorted(rotated.glob("*.pem")))
        stamp = []
        for candidate in candidates:
            try:
                info = candidate.stat()
            except OSError:
                continue
            stamp.append((str(candidate), info.st_mtime_ns, info.st_size))
        return tuple(stamp)

    def ring(self) -> KeyRing:
        stamp = self._files_stamp()
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                ring = load_keyring(self._manager)
            except ComposerError as exc:
                log.error("key files changed but cannot be loaded: keeping the keys in use", error=str(exc))
                return self._ring
            if ring.current.public_key().public_numbers() != self._ring.current.public_key().public_numbers():
                self.generation += 1
                log.warning("a new current key was found: it will be registered", key=ring.current.label)
            self._ring = ring
        return self._ring


def rotate_key(path: Path) -> Path:
    """Replace the key file by a new RSA-4096 key; the old one moves to `<path>.previous/`.

    Returns where the old key went. The old key stays usable for decryption (values saved before
    the rotation remain encrypted under it on the platform) until an admin deletes it.
    """
    old = load_private_key_file(path)
    rotated = previous_keys_directory(path)
    rotated.mkdir(mode=0o700, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    kept = rotated / f"{stamp}.pem"
    fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_EXCL, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "wb") as handle:
        handle.write(private_key_pkcs8_pem(old))
    temporary = path.with_name(path.name + ".new")
    write_new_key(temporary, overwrite=True)
    os.replace(temporary, path)
    return kept


def write_new_key(path: Path, *, overwrite: bool = False) -> RSAPrivateKey:
    """Write a fresh RSA-4096 PKCS#8 key, readable by its owner only (mode 0600 from creation)."""
    key = generate_private_key()
    if not path.parent.exists():
        try:
            path.parent.mkdir(mode=0o700, parents=True)  # a new directory for a key: owner only
        except OSError as exc:
            raise CredentialsKeyError(f"cannot create {path.parent}: {exc.strerror or exc}") from None
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
