"""The `Platform` protocol: what the daemon needs from OpenCTI or OpenAEV."""

from __future__ import annotations

from typing import Protocol

from xtm_composer.domain import ConnectorList, CurrentStatus, Health, PlatformKind


class Platform(Protocol):
    kind: PlatformKind

    async def version(self) -> str:
        """The platform version (e.g. `6.8.3`)."""

    async def register(self, *, manager_id: str, name: str, public_key: str) -> str:
        """Register (or update) this manager; returns the platform version it reports."""

    async def ping(self, *, manager_id: str) -> str:
        """Tell the platform we are alive; returns the platform version it reports."""

    async def list_connectors(self, *, manager_id: str) -> ConnectorList:
        """Every connector this manager must run. Raises rather than returning a partial list."""

    async def report_status(self, connector_id: str, status: CurrentStatus) -> None: ...

    async def report_logs(self, connector_id: str, lines: list[str]) -> None: ...

    async def report_health(self, connector_id: str, health: Health) -> None: ...

    async def aclose(self) -> None: ...
