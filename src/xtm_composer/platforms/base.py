"""The `Platform` protocol: what the daemon needs from OpenCTI or OpenAEV."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any, Protocol

from xtm_composer.domain import Connector, ConnectorList, CurrentStatus, Health, PlatformKind
from xtm_composer.observability import get_logger

log = get_logger(__name__)


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


class MalformedEntry(ValueError):
    """One listed connector is unusable; the message names the field, never a value."""


def parse_listing(items: list[Any], parse: Callable[[Any], Connector], *, id_key: str, name_key: str) -> ConnectorList:
    """Every usable connector of a platform's list, whatever the platform's field names.

    A malformed entry is skipped with an error naming it; its id (when it has one) is kept so that
    its workload is left alone, and an entry without an id makes the list incomplete (nothing may
    then be removed). An id listed twice makes both entries unusable: acting on either would flip
    the workload between two configurations.
    """
    connectors: list[Connector] = []
    unparsed: set[str] = set()
    complete = True
    for item in items:
        try:
            connectors.append(parse(item))
        except MalformedEntry as exc:
            item_id = item.get(id_key) if isinstance(item, dict) else None
            name = item.get(name_key) if isinstance(item, dict) else None
            if isinstance(item_id, str) and item_id:
                unparsed.add(item_id)
            else:
                complete = False
            log.error("connector skipped: malformed entry", connector_id=item_id, connector_name=name, reason=str(exc))
    counts = Counter(c.id for c in connectors)
    duplicated = {cid for cid, n in counts.items() if n > 1}
    for cid in sorted(duplicated):
        log.error("connector skipped: its id is listed more than once", connector_id=cid, times=counts[cid])
    kept = tuple(c for c in connectors if c.id not in duplicated)
    return ConnectorList(connectors=kept, unparsed_ids=frozenset(unparsed | duplicated), complete=complete)
