"""The OpenAEV REST twin of the GraphQL API (PROTOCOL.md §4), served when the state's kind is
"openaev": bearer token (401 without), 404 for a missing permission or an unknown manager or
instance, null fields omitted, an empty body on log pushes."""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from xtm_composer.emulator.errors import EmulatorError, NotFoundError
from xtm_composer.emulator.state import SLOW_FAULT_SECONDS, ConnectorView, EmulatorState, ManagerView

OUTAGE_PAGE = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1></body></html>"


def _state(request: Request) -> EmulatorState:
    return request.app.state.emulator  # type: ignore[no-any-return]


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"status": status, "message": message}, status_code=status)


def _without_nulls(value: Any) -> Any:
    """The OpenAEV server omits null fields."""
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


def instance_json(connector: ConnectorView) -> dict[str, Any]:
    return _without_nulls(
        {
            "connector_instance_id": connector.id,
            "connector_instance_name": connector.name,
            "connector_instance_hash": connector.contract_hash,
            "connector_image": connector.image,
            "connector_instance_current_status": connector.current_status,
            "connector_instance_requested_status": connector.requested_status,
            "connector_instance_configurations": [
                {
                    "configuration_key": entry.key,
                    "configuration_value": entry.value,
                    "configuration_is_encrypted": entry.encrypted,
                }
                for entry in connector.contract_configuration
            ],
        }
    )


def composer_json(manager: ManagerView, version: str) -> dict[str, Any]:
    return {"xtm_composer_id": manager.id, "xtm_composer_version": version}


async def _guard(request: Request, operation: str) -> Response | None:
    """Outage, token and permission checks shared by every route; None when the call may proceed."""
    state = _state(request)
    if state.kind != "openaev":
        return _error(404, "No static resource")
    state.count_call(operation)
    if state.outage:
        state.count_call("outage_rejections")
        return HTMLResponse(OUTAGE_PAGE, status_code=502)
    header = request.headers.get("authorization", "")
    token = header[7:] if header.lower().startswith("bearer ") else None
    if not state.check_token(token):
        state.count_call("auth_failures")
        return _error(401, "Unauthorized")
    if operation != "version" and not state.platform().permission:
        return _error(404, "Not found")
    return None


def _known_manager(state: EmulatorState, manager_id: str) -> ManagerView:
    manager = state.manager()
    if manager is None or manager.id != manager_id:
        raise NotFoundError(f"Composer {manager_id} not found")
    return manager


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body() or b"{}")
    except ValueError:
        raise EmulatorError("body is not JSON") from None
    if not isinstance(body, dict):
        raise EmulatorError("body must be a JSON object")
    return body


def _route(operation: str, handler):  # type: ignore[no-untyped-def]
    async def endpoint(request: Request) -> Response:
        refused = await _guard(request, operation)
        if refused is not None:
            return refused
        try:
            return await handler(request, _state(request))
        except EmulatorError as exc:
            status = 404 if isinstance(exc, NotFoundError) else min(exc.http_status, 499)
            return _error(status, exc.message)

    return endpoint


async def version(request: Request, state: EmulatorState) -> Response:
    return PlainTextResponse(state.version)


async def register(request: Request, state: EmulatorState) -> Response:
    body = await _body(request)
    for field in ("id", "name", "public_key"):
        if not isinstance(body.get(field), str):
            raise EmulatorError(f"{field} is required")
    manager = state.register_manager(body["id"], body["name"], body["public_key"])
    return JSONResponse(composer_json(manager, state.version))


async def refresh(request: Request, state: EmulatorState) -> Response:
    manager = _known_manager(state, request.path_params["manager_id"])
    return JSONResponse(composer_json(state.ping_manager(manager.id), state.version))


async def instances(request: Request, state: EmulatorState) -> Response:
    _known_manager(state, request.path_params["manager_id"])
    fault = state.platform().fault
    if fault == "graphql-error":
        return _error(500, "Internal Server Error")
    if fault == "null-list":
        return JSONResponse(None)
    if fault == "slow":
        await run_in_threadpool(time.sleep, SLOW_FAULT_SECONDS)
    listed = [instance_json(c) for c in state.connectors()]
    if fault == "missing-id" and listed:
        listed.append({k: v for k, v in listed[0].items() if k != "connector_instance_id"})
    return JSONResponse(listed)


async def status(request: Request, state: EmulatorState) -> Response:
    _known_manager(state, request.path_params["manager_id"])
    body = await _body(request)
    value = body.get("connector_instance_current_status")
    connector = state.report_current_status(request.path_params["instance_id"], value)
    return JSONResponse(instance_json(connector))


async def logs(request: Request, state: EmulatorState) -> Response:
    _known_manager(state, request.path_params["manager_id"])
    body = await _body(request)
    lines = body.get("connector_instance_logs")
    if not isinstance(lines, list) or not all(isinstance(line, str) for line in lines):
        raise EmulatorError("connector_instance_logs must be a list of strings")
    state.report_logs(request.path_params["instance_id"], lines)
    return Response(status_code=200)  # empty body, as OpenAEV answers


async def health(request: Request, state: EmulatorState) -> Response:
    _known_manager(state, request.path_params["manager_id"])
    body = await _body(request)
    restart_count = body.get("connector_instance_restart_count")
    loop = body.get("connector_instance_is_in_reboot_loop")
    started_at = body.get("connector_instance_started_at")
    if not isinstance(restart_count, int) or not isinstance(loop, bool):
        raise EmulatorError("restart count (int) and reboot loop flag (bool) are required")
    instance_id = request.path_params["instance_id"]
    state.report_health(instance_id, restart_count=restart_count, started_at=started_at or "", is_in_reboot_loop=loop)
    return JSONResponse(instance_json(state.connector(instance_id)))


BASE = "/api/xtm-composer/{manager_id}"


def rest_routes() -> list[Route]:
    return [
        Route("/api/settings/version", _route("version", version), methods=["GET"]),
        Route("/api/xtm-composer/register", _route("register", register), methods=["POST"]),
        Route(f"{BASE}/refresh-connectivity", _route("refresh-connectivity", refresh), methods=["PUT"]),
        Route(f"{BASE}/connector-instances", _route("connector-instances", instances), methods=["GET"]),
        Route(f"{BASE}/connector-instances/{{instance_id}}/status", _route("status", status), methods=["PUT"]),
        Route(f"{BASE}/connector-instances/{{instance_id}}/logs", _route("logs", logs), methods=["POST"]),
        Route(
            f"{BASE}/connector-instances/{{instance_id}}/health-check", _route("health-check", health), methods=["PUT"]
        ),
    ]
