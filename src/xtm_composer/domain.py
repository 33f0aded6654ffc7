"""Core value types shared by platforms, orchestrators and the reconciler.

Everything here is immutable and free of I/O. Secret values stay encrypted inside a
`Connector`; they are decrypted only by the executor, right before a workload is built.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime

# Ownership labels, identical to the Rust composer so a running installation can be adopted.
LABEL_MANAGER = "opencti-manager"
LABEL_CONNECTOR_ID = "opencti-connector-id"
LABEL_PLATFORM = "opencti-platform"
# Env var (Docker) / annotation (Kubernetes) holding the platform's contract hash.
HASH_KEY = "OPENCTI_CONFIG_HASH"
# Our own label with the same hash on Docker-API workloads, so a steady pass never inspects them
# (the Rust composer's workloads lack it: their env is read once instead).
LABEL_CONFIG_HASH = "opencti-config-hash"


class PlatformKind(enum.StrEnum):
    OPENCTI = "opencti"
    OPENAEV = "openaev"


class RequestedStatus(enum.StrEnum):
    STARTING = "starting"
    STOPPING = "stopping"
    STOPPED = "stopped"  # new connectors may show this; it means "should not run"

    @classmethod
    def parse(cls, raw: str | None) -> RequestedStatus:
        """Anything but `starting` means "should not run"."""
        return cls.STARTING if raw == cls.STARTING.value else cls.STOPPING


class CurrentStatus(enum.StrEnum):
    STARTED = "started"
    STOPPED = "stopped"


class WorkloadState(enum.StrEnum):
    """What the engine says about one workload, normalised across engines."""

    RUNNING = "running"
    RESTARTING = "restarting"
    CREATED = "created"
    EXITED = "exited"
    PAUSED = "paused"
    DEAD = "dead"
    PENDING = "pending"
    UNKNOWN = "unknown"

    @property
    def is_up(self) -> bool:
        # A workload restarting under its restart policy is still "meant to run": reporting it
        # as started avoids flapping between started/stopped; the health report shows the loop.
        return self in (WorkloadState.RUNNING, WorkloadState.RESTARTING)


@dataclass(frozen=True, slots=True)
class ConfigEntry:
    """One configuration entry of a connector; `value` is a base64 blob when `encrypted`."""

    key: str
    value: str
    encrypted: bool = False

    def __repr__(self) -> str:  # never show a value, even an encrypted one, in a repr
        return f"ConfigEntry(key={self.key!r}, encrypted={self.encrypted})"


@dataclass(frozen=True, slots=True)
class Connector:
    """A connector the platform wants managed (desired state)."""

    id: str
    name: str
    image: str
    contract_hash: str | None
    requested_status: RequestedStatus
    current_status: CurrentStatus | None
    config: tuple[ConfigEntry, ...] = ()

    @property
    def should_run(self) -> bool:
        return self.requested_status is RequestedStatus.STARTING


@dataclass(frozen=True, slots=True)
class ConnectorList:
    """The result of one successful fetch of the desired connectors.

    `unparsed_ids` are connectors the platform listed but that could not be used (malformed
    entries). Their workloads must be left alone: they are not orphans. `complete` is False
    when an entry was so broken that even its id is unknown; then nothing may be removed.
    """

    connectors: tuple[Connector, ...]
    unparsed_ids: frozenset[str] = frozenset()
    complete: bool = True


@dataclass(frozen=True, slots=True)
class Workload:
    """A workload (container, service, Deployment) as observed on the orchestrator."""

    name: str
    state: WorkloadState
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)
    config_hash: str | None = None
    engine_id: str | None = None
    # Why a workload that should run is not up, when the engine says (e.g. "CrashLoopBackOff: …").
    detail: str | None = field(default=None, compare=False)

    @property
    def connector_id(self) -> str | None:
        return self.labels.get(LABEL_CONNECTOR_ID)

    @property
    def manager_id(self) -> str | None:
        return self.labels.get(LABEL_MANAGER)

    @property
    def platform(self) -> str | None:
        return self.labels.get(LABEL_PLATFORM)


@dataclass(frozen=True, slots=True)
class Health:
    """Health of one running workload, as reported to the platform."""

    restart_count: int
    started_at: datetime | None
    is_in_reboot_loop: bool
    # The engine's reason when the workload is not running (e.g. "CrashLoopBackOff"); not reported.
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class MountedFile:
    """A file given to a workload read-only (e.g. the proxy CA bundle)."""

    path: str
    content: str

    def __repr__(self) -> str:
        return f"MountedFile(path={self.path!r}, bytes={len(self.content)})"


@dataclass(frozen=True, slots=True)
class WorkloadSpec:
    """Everything needed to create one workload. Holds decrypted values: never log it."""

    name: str
    image: str
    env: tuple[tuple[str, str], ...]
    labels: dict[str, str]
    config_hash: str
    files: tuple[MountedFile, ...] = ()
    # Keys whose values were encrypted on the platform: orchestrators that can keep them out of
    # the workload definition (Kubernetes Secrets) do so.
    sensitive_keys: frozenset[str] = frozenset()

    def __repr__(self) -> str:
        keys = [k for k, _ in self.env]
        return f"WorkloadSpec(name={self.name!r}, image={self.image!r}, env_keys={keys!r})"
