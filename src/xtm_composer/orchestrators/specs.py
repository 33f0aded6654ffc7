"""Pure builders shared by every orchestrator: workload names, labels, environment.

No I/O here: these functions take connectors and return plain data, so every rule is a
one-line table test.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable

from xtm_composer.domain import (
    HASH_KEY,
    LABEL_CONNECTOR_ID,
    LABEL_MANAGER,
    LABEL_PLATFORM,
    Connector,
    MountedFile,
    PlatformKind,
    WorkloadSpec,
)
from xtm_composer.errors import InvalidWorkloadSpec

MAX_NAME_LENGTH = 63
SUFFIX_LENGTH = 8
_DNS_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
# POSIX-portable env names; Docker and Kubernetes both accept this set.
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


def rust_workload_name(connector_name: str) -> str:
    """The Rust composer's rule: every non-alphanumeric character becomes `-`, then lower-case."""
    return "".join(ch if ch.isalnum() else "-" for ch in connector_name).lower()


def is_dns_label(name: str) -> bool:
    return bool(_DNS_LABEL.match(name))


def _id_suffix(connector_id: str) -> str:
    return hashlib.sha256(connector_id.encode("utf-8")).hexdigest()[:SUFFIX_LENGTH]


def suffixed_workload_name(connector_name: str, connector_id: str) -> str:
    """A valid DNS label for any name: ASCII-folded, cleaned, cut, plus a short id suffix."""
    folded = unicodedata.normalize("NFKD", connector_name).encode("ascii", "ignore").decode("ascii")
    cleaned = re.sub(r"-{2,}", "-", re.sub(r"[^a-z0-9]", "-", folded.lower())).strip("-")
    stem = cleaned[: MAX_NAME_LENGTH - SUFFIX_LENGTH - 1].rstrip("-")
    suffix = _id_suffix(connector_id)
    return f"{stem}-{suffix}" if stem else f"connector-{suffix}"


def preferred_workload_name(connector: Connector) -> str:
    """The Rust composer's name where it is a valid DNS label (so installs can be adopted)."""
    legacy = rust_workload_name(connector.name)
    return legacy if is_dns_label(legacy) else suffixed_workload_name(connector.name, connector.id)


def assign_workload_names(
    connectors: Iterable[Connector],
    *,
    current_owner: Callable[[str], str | None],
    current_names: Callable[[str], Iterable[str]] = lambda _connector_id: (),
) -> dict[str, str]:
    """Names for a set of connectors: deterministic, valid, distinct per connector id, and stable.

    A connector already running under one of its own valid names (the preferred one or its
    suffixed form) keeps it, so that another connector being added or deleted never renames it.
    Otherwise it gets its preferred name when free; when several want the same name, the one
    already holding it (`current_owner(name)`) or else the smallest id gets it, and the others
    their suffixed form, unique per id.
    """
    connectors = list(connectors)
    names: dict[str, str] = {}
    taken: set[str] = set()
    for connector in connectors:
        valid = {preferred_workload_name(connector), suffixed_workload_name(connector.name, connector.id)}
        kept = next((n for n in current_names(connector.id) if n in valid and n not in taken), None)
        if kept is not None:
            names[connector.id] = kept
            taken.add(kept)
    wanted: dict[str, list[Connector]] = {}
    for connector in connectors:
        if connector.id not in names:
            wanted.setdefault(preferred_workload_name(connector), []).append(connector)
    for name, claimants in wanted.items():
        if name in taken:
            keeper = None
        elif len(claimants) == 1:
            keeper = claimants[0].id
        else:
            owner = current_owner(name)
            keeper = owner if owner in {c.id for c in claimants} else min(c.id for c in claimants)
        for connector in claimants:
            chosen = name if connector.id == keeper else suffixed_workload_name(connector.name, connector.id)
            names[connector.id] = chosen
            taken.add(chosen)
    return names


def ownership_labels(*, manager_id: str, connector_id: str, platform: PlatformKind) -> dict[str, str]:
    return {LABEL_MANAGER: manager_id, LABEL_CONNECTOR_ID: connector_id, LABEL_PLATFORM: platform.value}


def check_env_name(name: str) -> None:
    if not _ENV_NAME.match(name):
        raise InvalidWorkloadSpec(f"configuration key {name!r} is not a valid environment variable name")


def build_env(entries: Iterable[tuple[str, str]], *, config_hash: str) -> tuple[tuple[str, str], ...]:
    """Environment for a workload: values byte-identical to the platform's, the hash last.

    A key given twice keeps its last value (platform-injected entries come after stored ones).
    """
    env: dict[str, str] = {}
    for key, value in entries:
        check_env_name(key)
        if "\x00" in value:
            raise InvalidWorkloadSpec(f"configuration key {key!r} has a value containing a NUL byte")
        env[key] = value
    env.pop(HASH_KEY, None)
    env[HASH_KEY] = config_hash
    return tuple(env.items())


def build_spec(
    connector: Connector,
    *,
    name: str,
    env_entries: Iterable[tuple[str, str]],
    manager_id: str,
    platform: PlatformKind,
    base_env: Iterable[tuple[str, str]] = (),
    files: tuple[MountedFile, ...] = (),
) -> WorkloadSpec:
    """The workload for a connector. `base_env` (proxy settings) comes first: the connector's own
    configuration overrides it, and the hash, always last, overrides everything."""
    config_hash = connector.contract_hash or ""
    return WorkloadSpec(
        name=name,
        image=connector.image,
        env=build_env([*base_env, *env_entries], config_hash=config_hash),
        labels=ownership_labels(manager_id=manager_id, connector_id=connector.id, platform=platform),
        config_hash=config_hash,
        files=files,
        sensitive_keys=frozenset(entry.key for entry in connector.config if entry.encrypted),
    )


def split_env_line(line: str) -> tuple[str, str]:
    """`KEY=VALUE` as engines return env: split on the first `=` only."""
    key, _, value = line.partition("=")
    return key, value


REDACTED = "***REDACTED***"
_SENSITIVE_NAME = re.compile(r"(TOKEN|PASSWORD|PASSWD|SECRET|API_KEY|APIKEY|PRIVATE_KEY|CREDENTIAL)", re.I)


def redacted_env(env: Iterable[tuple[str, str]], sensitive_keys: set[str], *, show_sensitive: bool) -> dict[str, str]:
    """Env for a debug log line: values of encrypted entries and secret-looking names are masked
    unless `show_sensitive` (manager.debug.show_sensitive_env_vars) explicitly asks for them."""
    shown: dict[str, str] = {}
    for key, value in env:
        hidden = key in sensitive_keys or bool(_SENSITIVE_NAME.search(key))
        shown[key] = value if show_sensitive or not hidden else REDACTED
    return shown
