"""`xtm-composer check`: one line per check, with the fix for each failure.

It changes nothing: no registration, no workload touched. The checks follow the symptoms of
the OpenCTI troubleshooting guide (key format, bad token, platform too old, Docker socket
missing, COMPOSER_ENV file not found, self-signed certificate …).
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from xtm_composer.config import Settings, load_settings
from xtm_composer.config.settings import PlatformSettings
from xtm_composer.crypto import KeyRing
from xtm_composer.domain import ConnectorList, PlatformKind
from xtm_composer.errors import (
    ComposerError,
    ConfigurationError,
    CredentialsKeyError,
    DecryptionError,
    OrchestratorError,
    PlatformAuthError,
    PlatformError,
    PlatformTLSError,
    PlatformUnsupported,
)
from xtm_composer.keys import key_file_mode_problem, load_keyring, load_manager_key
from xtm_composer.proxy import build_proxy_config
from xtm_composer.wiring import build_orchestrator, build_platform

MINIMUM_OPENCTI = (6, 8)


@dataclass(frozen=True)
class CheckResult:
    name: str
    ok: bool
    detail: str
    fix: str | None = None


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def check_configuration(config_dir: Path | None) -> tuple[CheckResult, Settings | None]:
    try:
        settings = load_settings(config_dir)
    except ConfigurationError as exc:
        fix = "fix the key named above in the YAML file or the environment variable"
        if "COMPOSER_ENV" in str(exc):
            fix = "create that file in the configuration directory, or unset COMPOSER_ENV"
        return CheckResult("configuration", False, str(exc), fix), None
    platforms = [k.value for k in PlatformKind if getattr(settings, k.value).enable]
    return CheckResult("configuration", True, f"valid; platforms enabled: {', '.join(platforms) or 'none'}"), settings


def check_key(settings: Settings) -> tuple[CheckResult, KeyRing | None]:
    result, ring = _check_key(settings)
    if not result.ok or ring is not None:
        return result, ring
    try:
        return result, load_keyring(settings.manager)
    except ComposerError as exc:
        return CheckResult("previous keys", False, str(exc), "fix or remove manager.credentials_previous_keys"), None


def _check_key(settings: Settings) -> tuple[CheckResult, KeyRing | None]:
    """The key check, and the key ring when checking it already loaded one (a token login is costly)."""
    manager = settings.manager
    if manager.credentials_key_pkcs11 is not None:
        try:
            ring = load_keyring(manager)
        except ComposerError as exc:
            fix = "check the PKCS#11 module, token, key label and PIN"
            return CheckResult("private key", False, str(exc), fix), None
        return CheckResult("private key", True, f"in PKCS#11 token ({ring.current.label})"), ring
    return _check_key_file(settings), None


def _check_key_file(settings: Settings) -> CheckResult:
    manager = settings.manager
    try:
        key = load_manager_key(manager)
    except ConfigurationError as exc:
        return CheckResult(
            "private key",
            False,
            str(exc),
            "xtm-composer keygen /path/key.pem, then set "
            "manager.credentials_key_filepath (MANAGER__CREDENTIALS_KEY_FILEPATH)",
        )
    except CredentialsKeyError as exc:
        text = str(exc)
        if "bits" in text:
            fix = "the platforms need RSA-4096: xtm-composer keygen /path/key.pem (or openssl genpkey -algorithm RSA "
            fix += "-pkeyopt rsa_keygen_bits:4096)"
        elif "public key" in text:
            fix = "point the composer at the private key file, not the public one"
        elif "chmod" in text:
            fix = "chmod 600 the key file (manager.strict_key_permissions refuses anything wider)"
        elif "cannot read" in text:
            fix = "check the path and that the composer's user can read the file"
        else:
            fix = "give a PEM private key: 'BEGIN PRIVATE KEY' (PKCS#8) or 'BEGIN RSA PRIVATE KEY' (PKCS#1)"
        return CheckResult("private key", False, text, fix)
    source = str(manager.credentials_key_filepath) if manager.credentials_key_filepath else "manager.credentials_key"
    if manager.credentials_key_filepath is not None:
        problem = key_file_mode_problem(manager.credentials_key_filepath)
        if problem:
            return CheckResult("private key", False, problem, f"chmod 600 {manager.credentials_key_filepath}")
    return CheckResult("private key", True, f"RSA-{key.key_size} from {source}")


def _secrets_result(kind: PlatformKind, connectors: ConnectorList, keys: KeyRing) -> CheckResult:
    """How many stored values each key opens: tells when a previous key can be retired."""
    unreadable: list[str] = []
    total = 0
    for connector in connectors.connectors:
        for entry in connector.config:
            if not entry.encrypted:
                continue
            total += 1
            try:
                keys.decrypt(entry.value)
            except DecryptionError:
                unreadable.append(f"{connector.name}/{entry.key}")
    by_key = ", ".join(f"{n} by {label}" for label, n in keys.uses.most_common()) or "none"
    detail = f"{total} encrypted values; opened {by_key}"
    needing_previous = sum(n for label, n in keys.uses.items() if label != keys.current.label)
    if keys.previous:
        detail += f"; {needing_previous} still need a previous key" + (
            "" if needing_previous else " (previous keys can be retired)"
        )
    keys.uses.clear()
    if unreadable:
        return CheckResult(
            f"{kind.value} secrets",
            False,
            f"{detail}; no key opens {', '.join(unreadable[:10])}",
            "re-enter these values in the platform, or add the key they were saved with to "
            "manager.credentials_previous_keys",
        )
    return CheckResult(f"{kind.value} secrets", True, detail)


async def _check_platform(kind: PlatformKind, settings: Settings, keys: KeyRing | None = None) -> list[CheckResult]:
    platform_settings: PlatformSettings = getattr(settings, kind.value)
    name = f"{kind.value} platform"
    proxy = build_proxy_config(platform_settings, platform=kind.value)
    client = build_platform(kind, platform_settings, manager_id=settings.manager.id, proxy=proxy)
    token_key = f"{kind.value}.token ({kind.value.upper()}__TOKEN)"
    try:
        version = await client.version()
        connectors = await client.list_connectors(manager_id=settings.manager.id)
    except PlatformTLSError as exc:
        return [
            CheckResult(
                name,
                False,
                str(exc),
                f"give the platform's CA ({kind.value}.https_proxy_ca with "
                f"with_proxy) or, on a test platform only, set {kind.value}.unsecured_certificate: true",
            )
        ]
    except PlatformAuthError as exc:
        if kind is PlatformKind.OPENAEV and exc.code == "NOT_FOUND":
            return [
                CheckResult(
                    name,
                    False,
                    f"token accepted but the composer endpoints answer 404: {exc}",
                    "run the composer once so it registers, and give the token's user the xtm-composer permission",
                )
            ]
        return [
            CheckResult(
                name,
                False,
                f"token refused: {exc}",
                f"set {token_key} to the token of a user allowed to manage connectors",
            )
        ]
    except PlatformUnsupported as exc:
        return [CheckResult(name, False, str(exc), "upgrade OpenCTI to 6.8 or newer")]
    except PlatformError as exc:
        return [
            CheckResult(
                name,
                False,
                f"unreachable at {platform_settings.url}: {exc}",
                f"check {kind.value}.url and that this host can reach it",
            )
        ]
    finally:
        await client.aclose()
    results = [CheckResult(name, True, f"{platform_settings.url} answers, token accepted, version {version}")]
    if kind is PlatformKind.OPENCTI and _version_tuple(version) < MINIMUM_OPENCTI:
        results.append(
            CheckResult(
                f"{kind.value} version",
                False,
                f"{version} is too old for the composer",
                "upgrade OpenCTI to 6.8 or newer",
            )
        )
    else:
        results.append(
            CheckResult(f"{kind.value} connectors", True, f"{len(connectors.connectors)} managed connectors listed")
        )
    if keys is not None:
        results.append(_secrets_result(kind, connectors, keys))
    return results


async def _check_orchestrator(kind: PlatformKind, settings: Settings) -> CheckResult:
    platform_settings: PlatformSettings = getattr(settings, kind.value)
    name = f"{kind.value} orchestrator ({platform_settings.daemon.selector})"
    try:
        orchestrator = build_orchestrator(kind, platform_settings, data_directory=settings.manager.data_directory)
    except ComposerError as exc:
        return CheckResult(name, False, str(exc), f"set {kind.value}.daemon.selector to docker")
    try:
        workloads = await orchestrator.list_workloads(manager_id=settings.manager.id)
    except OrchestratorError as exc:
        return CheckResult(
            name,
            False,
            str(exc),
            "start Docker, or give the composer its socket (mount "
            "/var/run/docker.sock, or set DOCKER_HOST) with permission to use it",
        )
    finally:
        await orchestrator.close()
    return CheckResult(name, True, f"reachable; {len(workloads)} workloads of manager {settings.manager.id}")


def run_checks(config_dir: Path | None) -> Iterator[CheckResult]:
    config_result, settings = check_configuration(config_dir)
    yield config_result
    if settings is None:
        return
    key_result, keys = check_key(settings)
    yield key_result
    enabled = [kind for kind in PlatformKind if getattr(settings, kind.value).enable]
    if not enabled:
        yield CheckResult("platforms", False, "no platform enabled", "set opencti.enable: true (OPENCTI__ENABLE)")
    for kind in enabled:
        yield from asyncio.run(_check_platform(kind, settings, keys))
        yield asyncio.run(_check_orchestrator(kind, settings))


def print_report(results: Iterator[CheckResult], echo: Callable[[str], None]) -> bool:
    all_ok = True
    for result in results:
        mark = "ok  " if result.ok else "FAIL"
        echo(f"[{mark}] {result.name}: {result.detail}")
        if not result.ok:
            all_ok = False
            echo(f"       fix: {result.fix}")
    return all_ok
