"""The emulated platform's memory: one thread-safe store shared by the GraphQL API and the admin API.

It keeps what an OpenCTI instance keeps for its connector manager (PROTOCOL.md §3): the platform
version, the API token, the single registered manager and its public key, the managed connectors
with their stored configuration, statuses, logs and health, plus call counters for tests and
benchmarks. Every public method takes the lock and returns frozen snapshots, never live objects.

Secrets follow the platform's rule (PROTOCOL.md §1–§2): a sensitive value is encrypted once, with
the public key of the manager registered at the time it is saved (or at registration, when no
manager existed yet), and is never re-encrypted afterwards.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric import rsa

from xtm_composer.emulator.encryption import encrypt_value, load_public_key
from xtm_composer.emulator.errors import ConflictError, EmulatorError, NotFoundError, UnsupportedError

DEFAULT_VERSION = "6.8.3"
DEFAULT_TOKEN = "ChangeMe"
DEFAULT_CONNECTOR_TYPE = "EXTERNAL_IMPORT"
DEFAULT_PUBLIC_URL = "http://127.0.0.1:4000"
HEALTH_TTL_SECONDS = 300.0
# Ways connectorsForManagers can be made to fail: an error in `errors[]` with data null, a null
# list, an answer slower than any sensible client timeout, an entry without an id.
FAULTS = frozenset({"graphql-error", "null-list", "slow", "missing-id"})
SLOW_FAULT_SECONDS = 10.0
CONNECTOR_TYPES = frozenset(
    {
        "EXTERNAL_IMPORT",
        "INTERNAL_IMPORT_FILE",
        "INTERNAL_ENRICHMENT",
        "INTERNAL_ANALYSIS",
        "INTERNAL_EXPORT_FILE",
        "STREAM",
    }
)
REQUESTED_STARTING = "starting"
REQUESTED_STOPPING = "stopping"
REQUESTED_STOPPED = "stopped"  # what a connector created without a start request shows
CURRENT_STATUSES = frozenset({"started", "stopped"})
ENCRYPTION_VERSIONS = frozenset({1, 2})
INJECTED_KEYS = ("CONNECTOR_ID", "CONNECTOR_NAME", "CONNECTOR_TYPE", "OPENCTI_URL", "OPENCTI_TOKEN")
OPENAEV_INJECTED_KEYS = ("OPENAEV_URL", "OPENAEV_TOKEN")
PLATFORM_KINDS = ("opencti", "openaev")
OPENAEV_LOG_PUSHES_KEPT = 3
NOT_FOUND_MESSAGE = "Cant find element to update"


def iso_timestamp(epoch: float) -> str:
    """ISO-8601 UTC with milliseconds and a `Z`, the way OpenCTI writes dates."""
    moment = datetime.fromtimestamp(epoch, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# ---------------------------------------------------------------------------------------------
# Snapshots handed out to callers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ServedEntry:
    """One `manager_contract_configuration` entry as the platform serves it.

    Sensitive entries carry the stored encrypted blob, or None while no manager key existed to
    encrypt them; they are always flagged `encrypted`, so no plaintext secret is ever served.
    """

    key: str
    value: str | None
    encrypted: bool


@dataclass(frozen=True)
class HealthView:
    restart_count: int
    started_at: str
    is_in_reboot_loop: bool
    last_update: str


@dataclass(frozen=True)
class ManagerView:
    id: str
    name: str
    public_key: str
    registered_at: float
    last_ping: float


@dataclass(frozen=True)
class StatusReport:
    """One `updateConnectorCurrentStatus` call, in arrival order."""

    at: float
    connector_id: str
    status: str


@dataclass(frozen=True)
class PlatformView:
    version: str
    encryption_version: int
    outage: bool
    public_url: str
    fault: str | None = None
    permission: bool = True
    kind: str = "opencti"


@dataclass(frozen=True)
class ConnectorView:
    """A connector as stored. `config` holds plain entries only; secrets are named, never shown."""

    id: str
    name: str
    image: str
    type: str
    requested_status: str
    current_status: str | None
    contract_hash: str
    config: tuple[tuple[str, str], ...]
    secret_keys: tuple[str, ...]
    pending_secret_keys: tuple[str, ...]
    contract_configuration: tuple[ServedEntry, ...]
    logs: tuple[str, ...]
    health: HealthView | None
    created_at: float


# ---------------------------------------------------------------------------------------------
# Internal mutable records (never leave the lock)
# ---------------------------------------------------------------------------------------------


@dataclass
class _Entry:
    key: str
    value: str
    sensitive: bool
    blob: str | None = None


@dataclass
class _Health:
    restart_count: int
    started_at: str
    is_in_reboot_loop: bool
    updated_at: float


@dataclass
class _Manager:
    id: str
    name: str
    public_key: str
    key: rsa.RSAPublicKey
    registered_at: float
    last_ping: float


@dataclass
class _Connector:
    id: str
    name: str
    image: str
    type: str
    token: _Entry
    created_at: float
    entries: list[_Entry] = field(default_factory=list)
    requested_status: str = REQUESTED_STOPPED
    current_status: str | None = None
    reset_generation: int = 0
    logs: list[str] = field(default_factory=list)
    pushes: list[list[str]] = field(default_factory=list)
    health: _Health | None = None


def _contract_hash(connector: _Connector) -> str:
    """sha256 over image, ordered stored configuration (plaintexts) and the reset generation."""
    material = [connector.image, [[e.key, e.value] for e in connector.entries], connector.reset_generation]
    return hashlib.sha256(json.dumps(material, ensure_ascii=False).encode("utf-8")).hexdigest()


def _check_text(value: object, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise EmulatorError(f"{what} must be a non-empty string")
    return value


def _check_entries(values: Mapping[str, object] | None, what: str, *, allow_none: bool) -> dict[str, str | None]:
    checked: dict[str, str | None] = {}
    for key, value in (values or {}).items():
        _check_text(key, f"{what} key")
        if value is None and allow_none:
            checked[key] = None
        elif isinstance(value, str):
            checked[key] = value
        else:
            raise EmulatorError(f"{what} value of {key} must be a string")
    return checked


class EmulatorState:
    """In-memory OpenCTI state for the emulator, safe to share between server threads."""

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        version: str = DEFAULT_VERSION,
        encryption_version: int = 1,
        public_url: str | None = None,
        health_ttl: float = HEALTH_TTL_SECONDS,
        clock: Callable[[], float] = time.time,
        kind: str = "opencti",
    ) -> None:
        if kind not in PLATFORM_KINDS:
            raise EmulatorError(f"kind must be one of {', '.join(PLATFORM_KINDS)}")
        # "openaev": the REST twin (PROTOCOL.md §4): SPKI keys only, v1 encryption, logs kept as
        # the set of lines of the 3 newest pushes, OPENAEV_* entries injected.
        self.kind = kind
        self._lock = threading.RLock()
        self._clock = clock
        self._health_ttl = health_ttl
        self._token = _check_text(token, "token")
        self._version = _check_text(version, "version")
        self._encryption_version = self._check_encryption(encryption_version)
        self._public_url = public_url
        self._outage = False
        self._fault: str | None = None
        self._permission = True
        self._manager: _Manager | None = None
        self._connectors: dict[str, _Connector] = {}
        self._calls: Counter[str] = Counter()
        self._history: list[StatusReport] = []

    # -- platform ------------------------------------------------------------------------------

    @staticmethod
    def _check_encryption(version: int) -> int:
        if version not in ENCRYPTION_VERSIONS:
            raise EmulatorError(f"encryption version must be 1 or 2, not {version!r}")
        return version

    @property
    def token(self) -> str:
        return self._token

    @property
    def version(self) -> str:
        with self._lock:
            return self._version

    @version.setter
    def version(self, value: str) -> None:
        with self._lock:
            self._version = _check_text(value, "version")

    @property
    def encryption_version(self) -> int:
        with self._lock:
            return self._encryption_version

    @encryption_version.setter
    def encryption_version(self, value: int) -> None:
        """Applies to values saved from now on; stored blobs keep their version."""
        with self._lock:
            self._encryption_version = self._check_encryption(value)

    @property
    def outage(self) -> bool:
        with self._lock:
            return self._outage

    @outage.setter
    def outage(self, value: bool) -> None:
        with self._lock:
            self._outage = bool(value)

    @property
    def public_url(self) -> str | None:
        """The URL served to connectors as `OPENCTI_URL` (None: not set yet, a default is served)."""
        with self._lock:
            return self._public_url

    @public_url.setter
    def public_url(self, value: str | None) -> None:
        with self._lock:
            self._public_url = value

    def platform(self) -> PlatformView:
        with self._lock:
            return PlatformView(
                version=self._version,
                encryption_version=self._encryption_version,
                outage=self._outage,
                public_url=self._public_url or DEFAULT_PUBLIC_URL,
                fault=self._fault,
                permission=self._permission,
                kind=self.kind,
            )

    def set_platform(
        self,
        *,
        version: str | None = None,
        outage: bool | None = None,
        encryption_version: int | None = None,
        public_url: str | None = None,
        fault: str | None = None,
        permission: bool | None = None,
    ) -> PlatformView:
        """Change any of the platform settings at once (all checked before any is applied).

        `fault` makes `connectorsForManagers` misbehave the way real deployments do, for failure
        tests: one of FAULTS, or "none" to clear it.
        """
        with self._lock:
            if fault is not None and fault != "none" and fault not in FAULTS:
                raise EmulatorError(f"fault must be one of: none, {', '.join(sorted(FAULTS))}")
            if version is not None:
                _check_text(version, "version")
            if encryption_version is not None:
                self._check_encryption(encryption_version)
            if public_url is not None:
                _check_text(public_url, "public_url")
            if version is not None:
                self._version = version
            if encryption_version is not None:
                self._encryption_version = encryption_version
            if outage is not None:
                self._outage = bool(outage)
            if public_url is not None:
                self._public_url = public_url
            if fault is not None:
                self._fault = None if fault == "none" else fault
            if permission is not None:
                # False: the token's user lacks the composer permission (OpenAEV then answers 404).
                self._permission = bool(permission)
            return self.platform()

    def check_token(self, presented: str | None) -> bool:
        """Constant-time comparison of a presented bearer token with the platform token."""
        if presented is None:
            return False
        return hmac.compare_digest(presented.encode("utf-8"), self._token.encode("utf-8"))

    # -- counters ------------------------------------------------------------------------------

    def count_call(self, operation: str) -> None:
        with self._lock:
            self._calls[operation] += 1

    def stats(self) -> dict[str, int]:
        """Calls per operation name (GraphQL root fields, plus request-level counters)."""
        with self._lock:
            return dict(self._calls)

    def status_history(self) -> list[StatusReport]:
        with self._lock:
            return list(self._history)

    # -- manager -------------------------------------------------------------------------------

    def register_manager(self, manager_id: str, name: str, public_key: str) -> ManagerView:
        """Create or update the single manager; encrypt any secret still waiting for a key."""
        _check_text(manager_id, "manager id")
        _check_text(name, "manager name")
        if self.kind == "openaev" and "-----BEGIN PUBLIC KEY-----" not in public_key:
            raise EmulatorError("Invalid public key: OpenAEV reads SPKI PEM ('BEGIN PUBLIC KEY') only")
        try:
            key = load_public_key(public_key)
        except (ValueError, TypeError) as exc:
            raise EmulatorError("Invalid public key: expected an RSA public key in PEM format") from exc
        with self._lock:
            now = self._clock()
            current = self._manager
            if current is not None and current.id != manager_id:
                raise UnsupportedError("Only one connector manager is supported per instance")
            if current is None:
                self._manager = _Manager(manager_id, name, public_key, key, registered_at=now, last_ping=now)
            else:
                current.name, current.public_key, current.key, current.last_ping = name, public_key, key, now
            for connector in self._connectors.values():
                self._seal(connector)
            return self._manager_view()

    def ping_manager(self, manager_id: str) -> ManagerView:
        with self._lock:
            if self._manager is None or self._manager.id != manager_id:
                raise NotFoundError(NOT_FOUND_MESSAGE)
            self._manager.last_ping = self._clock()
            return self._manager_view()

    def manager(self) -> ManagerView | None:
        with self._lock:
            return self._manager_view() if self._manager else None

    def forget_manager(self) -> bool:
        """Drop the registration (as after a platform reinstall); stored blobs stay as they are."""
        with self._lock:
            had = self._manager is not None
            self._manager = None
            return had

    def _manager_view(self) -> ManagerView:
        m = self._manager
        assert m is not None
        return ManagerView(m.id, m.name, m.public_key, m.registered_at, m.last_ping)

    # -- connectors ----------------------------------------------------------------------------

    def add_connector(
        self,
        name: str,
        image: str,
        *,
        config: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        connector_type: str = DEFAULT_CONNECTOR_TYPE,
        start: bool = False,
    ) -> ConnectorView:
        _check_text(name, "name")
        _check_text(image, "image")
        if connector_type not in CONNECTOR_TYPES:
            raise EmulatorError(f"type must be one of {', '.join(sorted(CONNECTOR_TYPES))}")
        plain = _check_entries(config, "config", allow_none=False)
        hidden = _check_entries(secrets, "secret", allow_none=False)
        both = sorted(set(plain) & set(hidden))
        if both:
            raise EmulatorError(f"keys given both as config and secret: {', '.join(both)}")
        with self._lock:
            self._check_name_free(name, None)
            connector = _Connector(
                id=str(uuid.uuid4()),
                name=name,
                image=image,
                type=connector_type,
                token=_Entry(f"{self.kind.upper()}_TOKEN", str(uuid.uuid4()), sensitive=True),
                created_at=self._clock(),
                requested_status=REQUESTED_STARTING if start else REQUESTED_STOPPED,
            )
            connector.entries = [_Entry(k, v, False) for k, v in plain.items() if v is not None]
            connector.entries += [_Entry(k, v, True) for k, v in hidden.items() if v is not None]
            self._seal(connector)
            self._connectors[connector.id] = connector
            return self._view(connector)

    def edit_connector(
        self,
        connector_id: str,
        *,
        name: str | None = None,
        image: str | None = None,
        config: Mapping[str, str | None] | None = None,
        secrets: Mapping[str, str | None] | None = None,
    ) -> ConnectorView:
        """Merge edits: keys set to None are removed, new keys are appended, others keep their place.

        Only the secrets given here are encrypted again (they are being saved); the others keep
        their blob.
        """
        if name is not None:
            _check_text(name, "name")
        if image is not None:
            _check_text(image, "image")
        plain = _check_entries(config, "config", allow_none=True)
        hidden = _check_entries(secrets, "secret", allow_none=True)
        both = sorted(set(plain) & set(hidden))
        if both:
            raise EmulatorError(f"keys given both as config and secret: {', '.join(both)}")
        with self._lock:
            connector = self._get(connector_id)
            if name is not None:
                self._check_name_free(name, connector.id)
                connector.name = name
            if image is not None:
                connector.image = image
            for updates, sensitive in ((plain, False), (hidden, True)):
                for key, value in updates.items():
                    self._set_entry(connector, key, value, sensitive=sensitive)
            self._seal(connector)
            return self._view(connector)

    def delete_connector(self, connector_id: str) -> None:
        with self._lock:
            self._get(connector_id)
            del self._connectors[connector_id]

    def request_status(self, connector_id: str, status: str) -> ConnectorView:
        """What a user's start/stop click does: set the requested status (hash unchanged)."""
        if status not in (REQUESTED_STARTING, REQUESTED_STOPPING):
            raise EmulatorError(f"requested status must be {REQUESTED_STARTING} or {REQUESTED_STOPPING}")
        with self._lock:
            connector = self._get(connector_id)
            connector.requested_status = status
            return self._view(connector)

    def start_connector(self, connector_id: str) -> ConnectorView:
        return self.request_status(connector_id, REQUESTED_STARTING)

    def stop_connector(self, connector_id: str) -> ConnectorView:
        return self.request_status(connector_id, REQUESTED_STOPPING)

    def reset_connector(self, connector_id: str) -> ConnectorView:
        """A platform "state reset": the contract hash changes, the configuration does not."""
        with self._lock:
            connector = self._get(connector_id)
            connector.reset_generation += 1
            return self._view(connector)

    def connector(self, connector_id: str) -> ConnectorView:
        with self._lock:
            return self._view(self._get(connector_id))

    def find_connector(self, name: str) -> ConnectorView | None:
        with self._lock:
            for connector in self._connectors.values():
                if connector.name == name:
                    return self._view(connector)
            return None

    def connectors(self) -> list[ConnectorView]:
        with self._lock:
            return [self._view(c) for c in self._connectors.values()]

    # -- reports from the manager --------------------------------------------------------------

    def report_current_status(self, connector_id: str, status: str) -> ConnectorView:
        if status not in CURRENT_STATUSES:
            raise EmulatorError("status must be started or stopped")
        with self._lock:
            connector = self._get(connector_id)
            connector.current_status = status
            self._history.append(StatusReport(self._clock(), connector_id, status))
            return self._view(connector)

    def report_logs(self, connector_id: str, logs: Sequence[str]) -> str:
        """OpenCTI replaces the stored lines with the last push; OpenAEV keeps the 3 newest pushes as
        one set of lines (order and duplicates lost)."""
        with self._lock:
            connector = self._get(connector_id)
            if self.kind == "openaev":
                connector.pushes = [*connector.pushes, list(logs)][-OPENAEV_LOG_PUSHES_KEPT:]
                connector.logs = sorted({line for push in connector.pushes for line in push})
            else:
                connector.logs = list(logs)
            return connector.id

    def report_health(self, connector_id: str, *, restart_count: int, started_at: str, is_in_reboot_loop: bool) -> str:
        with self._lock:
            connector = self._get(connector_id)
            connector.health = _Health(restart_count, started_at, is_in_reboot_loop, self._clock())
            return connector.id

    # -- internals -----------------------------------------------------------------------------

    def _get(self, connector_id: str) -> _Connector:
        connector = self._connectors.get(connector_id)
        if connector is None:
            raise NotFoundError(NOT_FOUND_MESSAGE)
        return connector

    def _check_name_free(self, name: str, own_id: str | None) -> None:
        for other in self._connectors.values():
            if other.name == name and other.id != own_id:
                raise ConflictError(f"A connector named {name!r} already exists")

    @staticmethod
    def _set_entry(connector: _Connector, key: str, value: str | None, *, sensitive: bool) -> None:
        index = next((i for i, e in enumerate(connector.entries) if e.key == key), None)
        if value is None:
            if index is not None:
                del connector.entries[index]
            return
        entry = _Entry(key, value, sensitive)  # a saved value: encrypted again by _seal
        if index is None:
            connector.entries.append(entry)
        else:
            connector.entries[index] = entry

    def _seal(self, connector: _Connector) -> None:
        """Encrypt, with the current manager key, every sensitive value that has no blob yet."""
        if self._manager is None:
            return
        for entry in self._all_sensitive(connector):
            if entry.blob is None:
                entry.blob = encrypt_value(entry.value, self._manager.key, version=self._encryption_version)

    @staticmethod
    def _all_sensitive(connector: _Connector) -> Iterable[_Entry]:
        yield from (e for e in connector.entries if e.sensitive)
        yield connector.token

    def _served(self, connector: _Connector) -> tuple[ServedEntry, ...]:
        def serve(entry: _Entry) -> ServedEntry:
            if entry.sensitive:
                return ServedEntry(entry.key, entry.blob, True)
            return ServedEntry(entry.key, entry.value, False)

        url = self._public_url or DEFAULT_PUBLIC_URL
        if self.kind == "openaev":
            injected = [_Entry("OPENAEV_URL", url, False), connector.token]
        else:
            injected = [
                _Entry("CONNECTOR_ID", connector.id, False),
                _Entry("CONNECTOR_NAME", connector.name, False),
                _Entry("CONNECTOR_TYPE", connector.type, False),
                _Entry("OPENCTI_URL", url, False),
                connector.token,
            ]
        return tuple(serve(e) for e in [*connector.entries, *injected])

    def _health(self, connector: _Connector) -> HealthView | None:
        health = connector.health
        if health is None or self._clock() - health.updated_at > self._health_ttl:
            return None
        return HealthView(
            health.restart_count, health.started_at, health.is_in_reboot_loop, iso_timestamp(health.updated_at)
        )

    def _view(self, connector: _Connector) -> ConnectorView:
        return ConnectorView(
            id=connector.id,
            name=connector.name,
            image=connector.image,
            type=connector.type,
            requested_status=connector.requested_status,
            current_status=connector.current_status,
            contract_hash=_contract_hash(connector),
            config=tuple((e.key, e.value) for e in connector.entries if not e.sensitive),
            secret_keys=tuple(e.key for e in connector.entries if e.sensitive),
            pending_secret_keys=tuple(e.key for e in self._all_sensitive(connector) if e.blob is None),
            contract_configuration=self._served(connector),
            logs=tuple(connector.logs),
            health=self._health(connector),
            created_at=connector.created_at,
        )
