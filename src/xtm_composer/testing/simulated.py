"""An in-memory engine and platform speaking the `Orchestrator` and `Platform` protocols.

They stand in for what a test or a benchmark cannot afford to run for real (thousands of
containers, a fixed latency per call); every call is counted. Real engines are tested through
their real clients elsewhere.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from xtm_composer.domain import (
    LABEL_MANAGER,
    Connector,
    ConnectorList,
    CurrentStatus,
    Health,
    PlatformKind,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from xtm_composer.errors import WorkloadConflict, WorkloadNotFound

_ids = itertools.count(1)


@dataclass
class SimulatedContainer:
    name: str
    labels: dict[str, str]
    config_hash: str | None
    state: WorkloadState = WorkloadState.CREATED
    env: tuple[tuple[str, str], ...] = ()
    engine_id: str = field(default_factory=lambda: f"sim-{next(_ids)}")
    restart_count: int = 0
    started_at: datetime | None = None

    def as_workload(self) -> Workload:
        return Workload(
            name=self.name,
            state=self.state,
            labels=dict(self.labels),
            config_hash=self.config_hash,
            engine_id=self.engine_id,
        )


class SimulatedOrchestrator:
    def __init__(self, containers: list[SimulatedContainer] | None = None, *, latency: float = 0.0) -> None:
        self.containers: dict[str, SimulatedContainer] = {c.name: c for c in containers or []}
        self.latency = latency
        self.calls = 0

    async def _call(self) -> None:
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)

    def _find(self, workload: Workload) -> SimulatedContainer:
        for container in self.containers.values():
            if container.engine_id == workload.engine_id or (
                workload.engine_id is None and container.name == workload.name
            ):
                return container
        raise WorkloadNotFound(f"no container {workload.name}")

    async def list_workloads(self, *, manager_id: str) -> list[Workload]:
        await self._call()
        return [c.as_workload() for c in self.containers.values() if c.labels.get(LABEL_MANAGER) == manager_id]

    async def prepare(self, spec: WorkloadSpec) -> None:
        await self._call()  # image present

    async def deploy(self, spec: WorkloadSpec, *, start: bool) -> Workload:
        await self._call()  # image present
        await self._call()  # create
        if spec.name in self.containers:
            raise WorkloadConflict(f"name {spec.name} already in use")
        container = SimulatedContainer(
            name=spec.name, labels=dict(spec.labels), config_hash=spec.config_hash, env=spec.env
        )
        self.containers[spec.name] = container
        if start:
            await self.start(container.as_workload())
        return container.as_workload()

    async def start(self, workload: Workload) -> None:
        await self._call()
        container = self._find(workload)
        container.state, container.started_at = WorkloadState.RUNNING, datetime.now(UTC)

    async def stop(self, workload: Workload) -> None:
        await self._call()
        self._find(workload).state = WorkloadState.EXITED

    async def remove(self, workload: Workload) -> None:
        await self._call()
        try:
            container = self._find(workload)
        except WorkloadNotFound:
            return
        del self.containers[container.name]

    async def health(self, workload: Workload) -> Health:
        await self._call()
        container = self._find(workload)
        return Health(restart_count=container.restart_count, started_at=container.started_at, is_in_reboot_loop=False)

    async def logs(self, workload: Workload, *, tail: int) -> list[str]:
        await self._call()
        self._find(workload)
        return [f"{workload.name} is running"]

    async def close(self) -> None:
        return None


class SimulatedPlatform:
    """Keeps connectors and applies status reports to them, as the platform does."""

    kind = PlatformKind.OPENCTI

    def __init__(self, connectors: list[Connector] | None = None, *, latency: float = 0.0) -> None:
        self.connectors: dict[str, Connector] = {c.id: c for c in connectors or []}
        self.latency = latency
        self.calls = 0
        self.logs: dict[str, list[str]] = {}
        self.health: dict[str, Health] = {}

    async def _call(self) -> None:
        self.calls += 1
        if self.latency:
            await asyncio.sleep(self.latency)

    async def version(self) -> str:
        await self._call()
        return "6.8.3"

    async def register(self, *, manager_id: str, name: str, public_key: str) -> str:
        await self._call()
        return "6.8.3"

    async def ping(self, *, manager_id: str) -> str:
        await self._call()
        return "6.8.3"

    async def list_connectors(self, *, manager_id: str) -> ConnectorList:
        await self._call()
        return ConnectorList(connectors=tuple(self.connectors.values()))

    async def report_status(self, connector_id: str, status: CurrentStatus) -> None:
        await self._call()
        self.connectors[connector_id] = replace(self.connectors[connector_id], current_status=status)

    async def report_logs(self, connector_id: str, lines: list[str]) -> None:
        await self._call()
        self.logs[connector_id] = list(lines)

    async def report_health(self, connector_id: str, health: Health) -> None:
        await self._call()
        self.health[connector_id] = health

    async def aclose(self) -> None:
        return None
