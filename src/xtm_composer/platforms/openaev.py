"""OpenAEV client: the REST calls of the composer (PROTOCOL.md §4).

Errors are translated in `_request` only. OpenAEV answers a missing permission with 404, so a
404 means "manager unknown" on the ping, "connector gone" on a report, and "no permission" on
the listing. The server omits null fields: one malformed instance is skipped with an error
naming it, the rest of the list is used, and its workload is left alone.
"""

from __future__ import annotations

import json
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
)
from xtm_composer.observability import get_logger
from xtm_composer.platforms.base import MalformedEntry, parse_listing
from xtm_composer.platforms.http import describe_transport_error

log = get_logger(__name__)

PERMISSION_HINT = "the token's user lacks the xtm-composer permission (OpenAEV answers 404 for that)"


class MalformedInstance(MalformedEntry):
    pass


class OpenAEVClient:
    """Talks to one OpenAEV instance for one manager; `http` has base_url `{url}` (paths add `/api/...`).

    Reports are addressed under the manager's path, so the manager id is given once here.
    """

    kind = PlatformKind.OPENAEV

    def __init__(self, http: httpx.AsyncClient, *, manager_id: str) -> None:
        self._http = http
        self._manager_path = f"/api/xtm-composer/{manager_id}"

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- calls --------------------------------------------------------------------------------
    async def version(self) -> str:
        response = await self._request("GET", "/api/settings/version", operation="version")
        text = response.text.strip().strip('"')
        if not text:
            raise PlatformUnavailable("version: empty answer")
        return text

    async def register(self, *, manager_id: str, name: str, public_key: str) -> str:
        body = {"id": manager_id, "name": name, "public_key": public_key}
        await self._json(await self._request("POST", "/api/xtm-composer/register", json=body, operation="register"))
        return await self.version()

    async def ping(self, *, manager_id: str) -> str:
        path = f"/api/xtm-composer/{manager_id}/refresh-connectivity"
        await self._request("PUT", path, operation="ping", not_found=ManagerUnknown)
        # The ping answer carries the composer's record, not the platform version: ask for it.
        return await self.version()

    async def list_connectors(self, *, manager_id: str) -> ConnectorList:
        path = f"/api/xtm-composer/{manager_id}/connector-instances"
        items = await self._json(await self._request("GET", path, operation="connector-instances"))
        if not isinstance(items, list):
            # Never "no connectors": that would remove every workload.
            raise PlatformUnavailable("connector-instances answered something other than a list")
        return parse_instance_list(items)

    async def report_status(self, connector_id: str, status: CurrentStatus) -> None:
        await self._report("PUT", connector_id, "status", {"connector_instance_current_status": status.value})

    async def report_logs(self, connector_id: str, lines: list[str]) -> None:
        # Success comes back as an empty or non-JSON body: nothing to parse.
        await self._report("POST", connector_id, "logs", {"connector_instance_logs": lines})

    async def report_health(self, connector_id: str, health: Health) -> None:
        started_at = health.started_at.isoformat().replace("+00:00", "Z") if health.started_at else None
        body = {
            "connector_instance_restart_count": health.restart_count,
            "connector_instance_started_at": started_at,
            "connector_instance_is_in_reboot_loop": health.is_in_reboot_loop,
        }
        await self._report("PUT", connector_id, "health-check", body)

    # -- plumbing -----------------------------------------------------------------------------
    async def _report(self, method: str, connector_id: str, what: str, body: dict[str, Any]) -> None:
        path = f"{self._manager_path}/connector-instances/{connector_id}/{what}"
        await self._request(method, path, json=body, operation=what, not_found=ConnectorGone)

    async def _request(
        self,
        method: str,
        path: str,
        *,
        operation: str,
        json: Any = None,
        not_found: type[PlatformRejected] = PlatformAuthError,
    ) -> httpx.Response:
        try:
            response = await self._http.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise describe_transport_error(exc) from None
        status = response.status_code
        if status < 400:
            return response
        message = _server_message(response)
        if status >= 500:
            raise PlatformUnavailable(f"{operation}: platform answered HTTP {status}{message}")
        if status == 401:
            raise PlatformAuthError(f"{operation}: token refused (HTTP 401){message}", code="UNAUTHORIZED")
        if status == 403:
            raise PlatformAuthError(f"{operation}: {PERMISSION_HINT} (HTTP 403){message}", code="FORBIDDEN")
        if status == 404:
            detail = PERMISSION_HINT if not_found is PlatformAuthError else "not found"
            raise not_found(f"{operation}: {detail} (HTTP 404){message}", code="NOT_FOUND")
        raise PlatformRejected(f"{operation}: platform answered HTTP {status}{message}", code=str(status))

    async def _json(self, response: httpx.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise PlatformUnavailable(
                f"{response.request.method} {response.request.url.path}: answer is not JSON "
                f"({response.headers.get('content-type', 'no content type')})"
            ) from None


def _server_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        for key in ("message", "error", "detail"):
            if isinstance(body.get(key), str):
                return f": {body[key][:200]}"
    return ""


def parse_instance(item: Any) -> Connector:
    if not isinstance(item, dict):
        raise MalformedInstance("entry is not an object")
    instance_id = item.get("connector_instance_id")
    name = item.get("connector_instance_name")
    image = item.get("connector_image")
    if not isinstance(instance_id, str) or not instance_id:
        raise MalformedInstance("missing connector_instance_id")
    if not isinstance(name, str) or not name.strip():
        raise MalformedInstance("missing connector_instance_name")
    if not isinstance(image, str) or not image.strip():
        raise MalformedInstance("missing connector_image")
    raw_config = item.get("connector_instance_configurations") or []
    if not isinstance(raw_config, list):
        raise MalformedInstance("connector_instance_configurations is not a list")
    entries = []
    for entry in raw_config:
        if not isinstance(entry, dict) or not isinstance(entry.get("configuration_key"), str):
            raise MalformedInstance("a configuration entry has no configuration_key")
        key = entry["configuration_key"]
        value = entry.get("configuration_value")
        encrypted = bool(entry.get("configuration_is_encrypted"))
        if value is None and encrypted:
            raise MalformedInstance(f"configuration entry {key} is marked encrypted but has no value")
        text = "" if value is None else _as_text(value)
        entries.append(ConfigEntry(key=key, value=text, encrypted=encrypted))
    raw_hash = item.get("connector_instance_hash")
    current = item.get("connector_instance_current_status")
    return Connector(
        id=instance_id,
        name=name,
        image=image.strip(),
        contract_hash=raw_hash if isinstance(raw_hash, str) and raw_hash else None,
        requested_status=RequestedStatus.parse(item.get("connector_instance_requested_status")),
        current_status=CurrentStatus(current) if current in ("started", "stopped") else None,
        config=tuple(entries),
    )


def _as_text(value: Any) -> str:
    """Env values are text: JSON keeps numbers, booleans and structures in the form the platform sent."""
    return value if isinstance(value, str) else json.dumps(value)


def parse_instance_list(items: list[Any]) -> ConnectorList:
    return parse_listing(items, parse_instance, id_key="connector_instance_id", name_key="connector_instance_name")
