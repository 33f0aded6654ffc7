"""A small JSON admin API (mounted under `/admin`) standing in for the platform's UI.

It lets tests, the demo and the CLI do what an OpenCTI user does: add, edit, start, stop, reset and
delete managed connectors, forget the registered manager, change the platform version, encryption
and availability, and read counters. Same bearer token as the GraphQL API. Secret values are never
returned: connectors list their secret keys only. Errors are `{"error": message}` with a 4xx status.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from xtm_composer.emulator.errors import EmulatorError
from xtm_composer.emulator.graphql_api import bearer_token
from xtm_composer.emulator.state import (
    DEFAULT_CONNECTOR_TYPE,
    ConnectorView,
    EmulatorState,
    ManagerView,
    PlatformView,
    iso_timestamp,
)

Endpoint = Callable[[Request, EmulatorState], Awaitable[Response]]
Handler = Callable[[Request], Awaitable[Response]]
ADD_FIELDS = frozenset({"name", "image", "config", "secrets", "type", "start"})
EDIT_FIELDS = frozenset({"name", "image", "config", "secrets"})
PLATFORM_FIELDS = frozenset({"version", "outage", "encryption", "public_url", "fault", "permission"})


class AdminRequestError(Exception):
    """A malformed admin request: answered 400 (or the given status) with the message."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def error_response(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def connector_json(connector: ConnectorView) -> dict[str, Any]:
    health = connector.health
    return {
        "id": connector.id,
        "name": connector.name,
        "image": connector.image,
        "type": connector.type,
        "requested_status": connector.requested_status,
        "current_status": connector.current_status,
        "hash": connector.contract_hash,
        "config": dict(connector.config),
        "secret_keys": list(connector.secret_keys),
        "pending_secret_keys": list(connector.pending_secret_keys),
        "logs": list(connector.logs),
        "health": None
        if health is None
        else {
            "restart_count": health.restart_count,
            "started_at": health.started_at,
            "is_in_reboot_loop": health.is_in_reboot_loop,
            "last_update": health.last_update,
        },
        "created_at": iso_timestamp(connector.created_at),
    }


def manager_json(manager: ManagerView | None) -> dict[str, Any] | None:
    if manager is None:
        return None
    return {
        "id": manager.id,
        "name": manager.name,
        "public_key": manager.public_key,
        "registered_at": iso_timestamp(manager.registered_at),
        "last_ping": iso_timestamp(manager.last_ping),
    }


def platform_json(platform: PlatformView) -> dict[str, Any]:
    return {
        "version": platform.version,
        "encryption": platform.encryption_version,
        "outage": platform.outage,
        "public_url": platform.public_url,
        "fault": platform.fault,
        "permission": platform.permission,
        "kind": platform.kind,
    }


async def _json_object(request: Request, allowed: frozenset[str]) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError) as exc:
        raise AdminRequestError("request body is not valid JSON") from exc
    if not isinstance(body, dict):
        raise AdminRequestError("request body must be a JSON object")
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise AdminRequestError(f"unknown field(s): {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}")
    return body


def _mapping(body: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is not None and not isinstance(value, dict):
        raise AdminRequestError(f"{key} must be a JSON object of KEY: value")
    return value


def _typed(body: dict[str, Any], key: str, kind: type, label: str) -> Any:
    value = body.get(key)
    # bool is an int in Python: never accept it where a number is expected.
    if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
        raise AdminRequestError(f"{key} must be {label}")
    return value


def request_state(request: Request) -> EmulatorState:
    """The state served by the application handling this request (see `server.create_app`)."""
    state = request.app.state.emulator
    assert isinstance(state, EmulatorState)
    return state


def _guarded(endpoint: Endpoint) -> Handler:
    """Check the bearer token, then map request and store errors to JSON 4xx answers."""

    async def guarded(request: Request) -> Response:
        state = request_state(request)
        if not state.check_token(bearer_token(request.headers.get("authorization"))):
            return error_response("missing or invalid bearer token", 401)
        try:
            return await endpoint(request, state)
        except AdminRequestError as exc:
            return error_response(exc.message, exc.status)
        except EmulatorError as exc:
            return error_response(exc.message, exc.http_status)

    return guarded


# -- connectors ----------------------------------------------------------------------------


async def list_connectors(request: Request, state: EmulatorState) -> Response:
    return JSONResponse([connector_json(c) for c in state.connectors()])


async def add_connector(request: Request, state: EmulatorState) -> Response:
    body = await _json_object(request, ADD_FIELDS)
    connector = state.add_connector(
        _typed(body, "name", str, "a string"),
        _typed(body, "image", str, "a string"),
        config=_mapping(body, "config"),
        secrets=_mapping(body, "secrets"),
        connector_type=_typed(body, "type", str, "a string") or DEFAULT_CONNECTOR_TYPE,
        start=bool(_typed(body, "start", bool, "true or false")),
    )
    return JSONResponse(connector_json(connector), status_code=201)


async def get_connector(request: Request, state: EmulatorState) -> Response:
    return JSONResponse(connector_json(state.connector(request.path_params["connector_id"])))


async def edit_connector(request: Request, state: EmulatorState) -> Response:
    body = await _json_object(request, EDIT_FIELDS)
    connector = state.edit_connector(
        request.path_params["connector_id"],
        name=_typed(body, "name", str, "a string"),
        image=_typed(body, "image", str, "a string"),
        config=_mapping(body, "config"),
        secrets=_mapping(body, "secrets"),
    )
    return JSONResponse(connector_json(connector))


async def delete_connector(request: Request, state: EmulatorState) -> Response:
    connector_id = request.path_params["connector_id"]
    state.delete_connector(connector_id)
    return JSONResponse({"id": connector_id, "deleted": True})


async def connector_action(request: Request, state: EmulatorState) -> Response:
    connector_id = request.path_params["connector_id"]
    actions = {
        "start": state.start_connector,
        "stop": state.stop_connector,
        "reset": state.reset_connector,
    }
    action = actions.get(request.path_params["action"])
    if action is None:
        raise AdminRequestError(f"unknown action; use one of {', '.join(actions)}", 404)
    return JSONResponse(connector_json(action(connector_id)))


# -- manager, platform, counters -------------------------------------------------------------


async def get_manager(request: Request, state: EmulatorState) -> Response:
    return JSONResponse(manager_json(state.manager()))


async def forget_manager(request: Request, state: EmulatorState) -> Response:
    return JSONResponse({"forgotten": state.forget_manager()})


async def get_platform(request: Request, state: EmulatorState) -> Response:
    return JSONResponse(platform_json(state.platform()))


async def set_platform(request: Request, state: EmulatorState) -> Response:
    body = await _json_object(request, PLATFORM_FIELDS)
    platform = state.set_platform(
        version=_typed(body, "version", str, "a string"),
        outage=_typed(body, "outage", bool, "true or false"),
        encryption_version=_typed(body, "encryption", int, "1 or 2"),
        public_url=_typed(body, "public_url", str, "a string"),
        fault=_typed(body, "fault", str, "a string"),
        permission=_typed(body, "permission", bool, "true or false"),
    )
    return JSONResponse(platform_json(platform))


async def stats(request: Request, state: EmulatorState) -> Response:
    return JSONResponse(
        {
            "calls": state.stats(),
            "connectors": len(state.connectors()),
            "status_reports": len(state.status_history()),
            "manager_registered": state.manager() is not None,
        }
    )


async def history(request: Request, state: EmulatorState) -> Response:
    return JSONResponse(
        [
            {"at": iso_timestamp(r.at), "connector_id": r.connector_id, "status": r.status}
            for r in state.status_history()
        ]
    )


def admin_routes() -> list[Route]:
    """The `/admin` routes; each request acts on the state its application currently serves."""
    return [
        Route("/connectors", _guarded(list_connectors), methods=["GET"]),
        Route("/connectors", _guarded(add_connector), methods=["POST"]),
        Route("/connectors/{connector_id}", _guarded(get_connector), methods=["GET"]),
        Route("/connectors/{connector_id}", _guarded(edit_connector), methods=["PATCH"]),
        Route("/connectors/{connector_id}", _guarded(delete_connector), methods=["DELETE"]),
        Route("/connectors/{connector_id}/{action:str}", _guarded(connector_action), methods=["POST"]),
        Route("/manager", _guarded(get_manager), methods=["GET"]),
        Route("/manager/forget", _guarded(forget_manager), methods=["POST"]),
        Route("/platform", _guarded(get_platform), methods=["GET"]),
        Route("/platform", _guarded(set_platform), methods=["PUT"]),
        Route("/stats", _guarded(stats), methods=["GET"]),
        Route("/history", _guarded(history), methods=["GET"]),
    ]
