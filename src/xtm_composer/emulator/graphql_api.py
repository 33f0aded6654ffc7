"""The emulator's GraphQL endpoint: parse, validate and execute requests with graphql-core.

It answers like OpenCTI does (PROTOCOL.md §3): HTTP 200 with `errors[].extensions.code` for
request, validation, authentication and resolver errors; a nullable field that fails reads `null`
next to the errors, a non-null one nulls `data` — graphql-core's own null propagation gives both.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

from graphql import (
    DocumentNode,
    GraphQLError,
    GraphQLObjectType,
    GraphQLResolveInfo,
    GraphQLSchema,
    GraphQLSyntaxError,
    build_schema,
    execute_sync,
    parse,
    validate,
)

from xtm_composer.emulator.errors import DatabaseError, EmulatorError
from xtm_composer.emulator.state import (
    SLOW_FAULT_SECONDS,
    ConnectorView,
    EmulatorState,
    HealthView,
    ManagerView,
    iso_timestamp,
)

AUTH_REQUIRED_MESSAGE = "You must be logged in to do this."
PARENT_TYPES = ["Basic-Object", "Internal-Object"]
Payload = dict[str, Any]
Resolver = Callable[..., Any]


def load_sdl() -> str:
    """The emulator's schema text (`schema.graphql`, shipped with the package)."""
    return resources.files("xtm_composer.emulator").joinpath("schema.graphql").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# Views -> GraphQL objects (plain dicts, read by graphql-core's default resolver)
# ---------------------------------------------------------------------------------------------


def _manager_object(manager: ManagerView, version: str) -> Payload:
    return {
        "id": manager.id,
        "standard_id": f"connector-manager--{manager.id}",
        "entity_type": "ConnectorManager",
        "parent_types": PARENT_TYPES,
        "name": manager.name,
        "last_sync_execution": iso_timestamp(manager.last_ping),
        "about_version": version,
        "active": True,
    }


def _health_object(health: HealthView | None) -> Payload | None:
    if health is None:
        return None
    return {
        "restart_count": health.restart_count,
        "started_at": health.started_at,
        "is_in_reboot_loop": health.is_in_reboot_loop,
        "last_update": health.last_update,
    }


def _connector_object(connector: ConnectorView, manager: Payload | None) -> Payload:
    return {
        "id": connector.id,
        "standard_id": f"connector--{connector.id}",
        "entity_type": "Connector",
        "parent_types": PARENT_TYPES,
        "name": connector.name,
        "manager": manager,
        "manager_contract_image": connector.image,
        "manager_current_status": connector.current_status,
        "manager_requested_status": connector.requested_status,
        "manager_contract_configuration": [
            {"key": e.key, "value": e.value, "encrypted": e.encrypted} for e in connector.contract_configuration
        ],
        "manager_contract_hash": connector.contract_hash,
        "manager_connector_logs": list(connector.logs),
        "manager_health_metrics": _health_object(connector.health),
    }


# ---------------------------------------------------------------------------------------------
# Resolvers (the state travels as the execution context)
# ---------------------------------------------------------------------------------------------


def _state(info: GraphQLResolveInfo) -> EmulatorState:
    state = info.context
    assert isinstance(state, EmulatorState)
    return state


def _manager_payload(state: EmulatorState) -> Payload | None:
    manager = state.manager()
    return _manager_object(manager, state.version) if manager else None


def _about(_root: None, info: GraphQLResolveInfo) -> Payload:
    return {"version": _state(info).version}


def _connectors_for_managers(_root: None, info: GraphQLResolveInfo) -> list[Payload] | None:
    state = _state(info)
    fault = state.platform().fault
    if fault == "graphql-error":
        raise DatabaseError("Elasticsearch cluster unavailable")
    if fault == "null-list":
        return None
    if fault == "slow":
        time.sleep(SLOW_FAULT_SECONDS)
    manager = _manager_payload(state)
    connectors = [_connector_object(c, manager) for c in state.connectors()]
    if fault == "missing-id":
        connectors.append({**connectors[0], "id": None} if connectors else {"id": None})
    return connectors


def _register(_root: None, info: GraphQLResolveInfo, input: Payload | None = None) -> Payload:
    state = _state(info)
    if input is None:
        raise EmulatorError("Missing input")
    manager = state.register_manager(input["id"], input["name"], input["public_key"])
    return _manager_object(manager, state.version)


def _ping(_root: None, info: GraphQLResolveInfo, input: Payload | None = None) -> Payload:
    state = _state(info)
    if input is None:
        raise EmulatorError("Missing input")
    return _manager_object(state.ping_manager(input["id"]), state.version)


def _current_status(_root: None, info: GraphQLResolveInfo, input: Payload) -> Payload:
    state = _state(info)
    connector = state.report_current_status(input["id"], input["status"])
    return _connector_object(connector, _manager_payload(state))


def _logs(_root: None, info: GraphQLResolveInfo, input: Payload) -> str:
    return _state(info).report_logs(input["id"], input["logs"])


def _health(_root: None, info: GraphQLResolveInfo, input: Payload) -> str:
    return _state(info).report_health(
        input["id"],
        restart_count=input["restart_count"],
        started_at=input["started_at"],
        is_in_reboot_loop=input["is_in_reboot_loop"],
    )


def _operation(resolver: Resolver) -> Resolver:
    """Count the call under its field name and turn store errors into coded GraphQL errors."""

    def resolve(root: Any, info: GraphQLResolveInfo, **args: Any) -> Any:
        _state(info).count_call(info.field_name)
        try:
            return resolver(root, info, **args)
        except EmulatorError as exc:
            raise GraphQLError(exc.message, extensions={"code": exc.code}) from exc

    return resolve


ROOT_RESOLVERS: dict[tuple[str, str], Resolver] = {
    ("Query", "about"): _about,
    ("Query", "connectorsForManagers"): _connectors_for_managers,
    ("Mutation", "registerConnectorsManager"): _register,
    ("Mutation", "updateConnectorManagerStatus"): _ping,
    ("Mutation", "updateConnectorCurrentStatus"): _current_status,
    ("Mutation", "updateConnectorLogs"): _logs,
    ("Mutation", "updateConnectorHealth"): _health,
}


@lru_cache(maxsize=256)
def _parsed_and_validated(schema: GraphQLSchema, query: str) -> tuple[DocumentNode, tuple[GraphQLError, ...]]:
    """Parse and validate a document once: clients send the same few documents again and again
    (Apollo Server, in front of OpenCTI, caches them the same way)."""
    document = parse(query)
    return document, tuple(validate(schema, document))


@cache
def emulator_schema() -> GraphQLSchema:
    """The executable schema: our SDL with the root resolvers bound (built once per process)."""
    schema = build_schema(load_sdl())
    for (type_name, field_name), resolver in ROOT_RESOLVERS.items():
        root = schema.get_type(type_name)
        assert isinstance(root, GraphQLObjectType)
        root.fields[field_name].resolve = _operation(resolver)
    return schema


# ---------------------------------------------------------------------------------------------
# HTTP-level handling
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphQLResponse:
    status: int
    body: Payload


def _error(message: str, code: str) -> Payload:
    return {"message": message, "extensions": {"code": code}}


def _formatted(error: GraphQLError, default_code: str) -> Payload:
    formatted: Payload = dict(error.formatted)
    extensions = dict(formatted.get("extensions") or {})
    extensions.setdefault("code", default_code)
    formatted["extensions"] = extensions
    return formatted


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class GraphQLEndpoint:
    """Turns one HTTP request body into an OpenCTI-shaped answer, against one `EmulatorState`."""

    def __init__(self, state: EmulatorState, *, schema: GraphQLSchema | None = None) -> None:
        self.state = state
        self.schema = schema or emulator_schema()

    def handle(self, body: bytes, authorization: str | None) -> GraphQLResponse:
        self.state.count_call("graphql_requests")
        try:
            payload = json.loads(body or b"null")
        except (ValueError, UnicodeDecodeError):
            return GraphQLResponse(400, {"errors": [_error("POST body is not valid JSON", "BAD_REQUEST")]})
        problem = self._check_payload(payload)
        if problem:
            return GraphQLResponse(400, {"errors": [_error(problem, "BAD_REQUEST")]})
        try:
            document, invalid = _parsed_and_validated(self.schema, payload["query"])
        except GraphQLSyntaxError as exc:
            return GraphQLResponse(200, {"errors": [_formatted(exc, "GRAPHQL_PARSE_FAILED")]})
        if invalid:
            self.state.count_call("validation_failures")
            errors = [_formatted(e, "GRAPHQL_VALIDATION_FAILED") for e in invalid]
            return GraphQLResponse(200, {"errors": errors})
        if not self.state.check_token(bearer_token(authorization)):
            self.state.count_call("auth_failures")
            return GraphQLResponse(200, {"data": None, "errors": [_error(AUTH_REQUIRED_MESSAGE, "AUTH_REQUIRED")]})
        result = execute_sync(
            self.schema,
            document,
            context_value=self.state,
            variable_values=payload.get("variables"),
            operation_name=payload.get("operationName"),
        )
        answer: Payload = {"data": result.data}
        if result.errors:
            # Errors without a path come from variable coercion or operation selection.
            answer["errors"] = [
                _formatted(e, "INTERNAL_SERVER_ERROR" if e.path else "BAD_USER_INPUT") for e in result.errors
            ]
        return GraphQLResponse(200, answer)

    @staticmethod
    def _check_payload(payload: object) -> str | None:
        if not isinstance(payload, dict):
            return "POST body must be a JSON object with a 'query'"
        if not isinstance(payload.get("query"), str) or not payload["query"].strip():
            return "POST body must contain a non-empty string 'query'"
        if payload.get("variables") is not None and not isinstance(payload["variables"], dict):
            return "'variables' must be a JSON object"
        if payload.get("operationName") is not None and not isinstance(payload["operationName"], str):
            return "'operationName' must be a string"
        return None
