"""OpenCTI client: the seven GraphQL operations of the composer (PROTOCOL.md §3).

All GraphQL documents live here as constants so a test can validate each against the real
OpenCTI schema. Errors are translated in `_execute` only: transport failures and 5xx become
`PlatformUnavailable`; `errors[]` become `PlatformRejected` subclasses carrying `extensions.code`.
"""

from __future__ import annotations

from typing import Any

import httpx

from xtm_composer.domain import (
    ConfigEntry,
    Connector,
    ConnectorList,
    CurrentStatus,
    Health,
    PlatformKind,
    RequestedStatus,
)
from xtm_composer.errors import (
    ConnectorGone,
    ManagerUnknown,
    PlatformAuthError,
    PlatformRejected,
    PlatformUnavailable,
    PlatformUnsupported,
)
from xtm_composer.observability import get_logger
from xtm_composer.platforms.base import MalformedEntry, parse_listing
from xtm_composer.platforms.http import describe_transport_error

log = get_logger(__name__)

ABOUT = "query XtmComposerAbout { about { version } }"
REGISTER = """
mutation XtmComposerRegister($input: RegisterConnectorsManagerInput) {
  registerConnectorsManager(input: $input) { id about_version }
}"""
PING = """
mutation XtmComposerPing($input: UpdateConnectorManagerStatusInput) {
  updateConnectorManagerStatus(input: $input) { id about_version }
}"""
CONNECTORS = """
query XtmComposerConnectors {
  connectorsForManagers {
    id
    name
    manager_contract_hash
    manager_contract_image
    manager_current_status
    manager_requested_status
    manager_contract_configuration { key value encrypted }
  }
}"""
REPORT_STATUS = """
mutation XtmComposerStatus($input: CurrentConnectorStatusInput!) {
  updateConnectorCurrentStatus(input: $input) { id }
}"""
REPORT_LOGS = """
mutation XtmComposerLogs($input: LogsConnectorStatusInput!) {
  updateConnectorLogs(input: $input)
}"""
REPORT_HEALTH = """
mutation XtmComposerHealth($input: HealthConnectorStatusInput!) {
  updateConnectorHealth(input: $input)
}"""

ALL_DOCUMENTS = (ABOUT, REGISTER, PING, CONNECTORS, REPORT_STATUS, REPORT_LOGS, REPORT_HEALTH)

AUTH_CODES = frozenset({"AUTH_REQUIRED", "FORBIDDEN_ACCESS", "UNAUTHENTICATED", "FORBIDDEN"})
# What a platform older than 6.8 answers for operations its schema does not have.
UNSUPPORTED_CODES = frozenset({"GRAPHQL_VALIDATION_FAILED", "GRAPHQL_PARSE_FAILED"})
UNSUPPORTED_HINT = "the platform does not know the composer operations: OpenCTI 6.8 or newer is required"


class OpenCTIClient:
    """Talks to one OpenCTI instance over an injected `httpx.AsyncClient`."""

    kind = PlatformKind.OPENCTI

    def __init__(self, http: httpx.AsyncClient) -> None:
        self._http = http

    async def aclose(self) -> None:
        await self._http.aclose()

    async def version(self) -> str:
        data = await self._execute(ABOUT, None, operation="about")
        about = data.get("about") or {}
        version = about.get("version")
        if not isinstance(version, str):
            raise PlatformUnavailable("the platform answered without a version")
        return version

    async def register(self, *, manager_id: str, name: str, public_key: str) -> str:
        data = await self._execute(
            REGISTER, {"input": {"id": manager_id, "name": name, "public_key": public_key}}, operation="register"
        )
        return _about_version(data.get("registerConnectorsManager"), "registerConnectorsManager")

    async def ping(self, *, manager_id: str) -> str:
        try:
            data = await self._execute(PING, {"input": {"id": manager_id}}, operation="ping")
        except PlatformRejected as exc:
            if exc.code == "FUNCTIONAL_ERROR":  # "Cant find element to update"
                raise ManagerUnknown(str(exc), code=exc.code) from None
            raise
        return _about_version(data.get("updateConnectorManagerStatus"), "updateConnectorManagerStatus")

    async def list_connectors(self, *, manager_id: str) -> ConnectorList:
        data = await self._execute(CONNECTORS, None, operation="connectorsForManagers")
        items = data.get("connectorsForManagers")
        if not isinstance(items, list):
            # A null list is not "no connectors": treating it so would remove every workload.
            raise PlatformUnavailable("connectorsForManagers answered null instead of a list")
        return parse_connector_list(items)

    async def report_status(self, connector_id: str, status: CurrentStatus) -> None:
        await self._report(
            REPORT_STATUS,
            {"input": {"id": connector_id, "status": status.value}},
            operation="updateConnectorCurrentStatus",
        )

    async def report_logs(self, connector_id: str, lines: list[str]) -> None:
        await self._report(REPORT_LOGS, {"input": {"id": connector_id, "logs": lines}}, operation="updateConnectorLogs")

    async def report_health(self, connector_id: str, health: Health) -> None:
        started_at = health.started_at.isoformat().replace("+00:00", "Z") if health.started_at else ""
        variables = {
            "input": {
                "id": connector_id,
                "restart_count": health.restart_count,
                "started_at": started_at,
                "is_in_reboot_loop": health.is_in_reboot_loop,
            }
        }
        await self._report(REPORT_HEALTH, variables, operation="updateConnectorHealth")

    async def _report(self, document: str, variables: dict[str, Any], *, operation: str) -> None:
        try:
            await self._execute(document, variables, operation=operation)
        except PlatformRejected as exc:
            if exc.code == "FUNCTIONAL_ERROR":  # "Cant find element to update": deleted meanwhile
                raise ConnectorGone(str(exc), code=exc.code) from None
            raise

    async def _execute(self, document: str, variables: dict[str, Any] | None, *, operation: str) -> dict[str, Any]:
        try:
            response = await self._http.post("/graphql", json={"query": document, "variables": variables or {}})
        except httpx.HTTPError as exc:
            raise describe_transport_error(exc) from None
        body = _json_or_none(response)
        if response.status_code >= 500:
            raise PlatformUnavailable(f"{operation}: platform answered HTTP {response.status_code}")
        if body is None:
            raise PlatformUnavailable(
                f"{operation}: platform answered HTTP {response.status_code} with a non-JSON body "
                f"({response.headers.get('content-type', 'no content type')})"
            )
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            raise _translate_graphql_errors(errors, operation=operation)
        if response.status_code in (401, 403):
            raise PlatformAuthError(f"{operation}: platform refused the token (HTTP {response.status_code})")
        if response.status_code >= 400:
            raise PlatformRejected(f"{operation}: platform answered HTTP {response.status_code}")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise PlatformUnavailable(f"{operation}: platform answered without data")
        return data


def _json_or_none(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _translate_graphql_errors(errors: list[Any], *, operation: str) -> PlatformRejected:
    first = errors[0] if isinstance(errors[0], dict) else {}
    message = str(first.get("message", "unknown error"))[:300]
    extensions = first.get("extensions") if isinstance(first.get("extensions"), dict) else {}
    code = extensions.get("code") if isinstance(extensions.get("code"), str) else None
    if code in AUTH_CODES:
        return PlatformAuthError(f"{operation}: {message}", code=code)
    if code in UNSUPPORTED_CODES or "Cannot query field" in message or "Unknown type" in message:
        return PlatformUnsupported(f"{operation}: {UNSUPPORTED_HINT} ({message})", code=code)
    return PlatformRejected(f"{operation}: {message}", code=code)


def _about_version(payload: Any, field: str) -> str:
    if not isinstance(payload, dict) or not isinstance(payload.get("about_version"), str):
        raise PlatformUnavailable(f"{field} answered without about_version")
    return str(payload["about_version"])


class MalformedConnector(MalformedEntry):
    """One listed connector is unusable; the message names the field, never a value."""


def parse_connector(item: Any) -> Connector:
    if not isinstance(item, dict):
        raise MalformedConnector("entry is not an object")
    connector_id = item.get("id")
    name = item.get("name")
    image = item.get("manager_contract_image")
    if not isinstance(connector_id, str) or not connector_id:
        raise MalformedConnector("missing id")
    if not isinstance(name, str) or not name.strip():
        raise MalformedConnector("missing name")
    if not isinstance(image, str) or not image.strip():
        raise MalformedConnector("missing manager_contract_image")
    raw_hash = item.get("manager_contract_hash")
    current = item.get("manager_current_status")
    config_items = item.get("manager_contract_configuration") or []
    if not isinstance(config_items, list):
        raise MalformedConnector("manager_contract_configuration is not a list")
    entries = []
    for entry in config_items:
        if not isinstance(entry, dict) or not isinstance(entry.get("key"), str) or not entry["key"]:
            raise MalformedConnector("a configuration entry has no key")
        value = entry.get("value")
        encrypted = bool(entry.get("encrypted"))
        if value is None and encrypted:
            raise MalformedConnector(f"configuration entry {entry['key']} is marked encrypted but has no value")
        entries.append(ConfigEntry(key=entry["key"], value="" if value is None else str(value), encrypted=encrypted))
    return Connector(
        id=connector_id,
        name=name,
        image=image.strip(),
        contract_hash=raw_hash if isinstance(raw_hash, str) and raw_hash else None,
        requested_status=RequestedStatus.parse(item.get("manager_requested_status")),
        current_status=CurrentStatus(current) if current in ("started", "stopped") else None,
        config=tuple(entries),
    )


def parse_connector_list(items: list[Any]) -> ConnectorList:
    return parse_listing(items, parse_connector, id_key="id", name_key="name")
