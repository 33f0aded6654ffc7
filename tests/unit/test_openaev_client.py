"""OpenAEV client contract: every path and body of PROTOCOL.md §4, tolerant parsing, errors translated."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import httpx
import pytest

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.domain import CurrentStatus, Health, RequestedStatus
from xtm_composer.errors import ConnectorGone, ManagerUnknown, PlatformAuthError, PlatformUnavailable
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.openaev import OpenAEVClient

MANAGER = "mgr-7"


def client_answering(handler):
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = PlatformSettings(enable=True, url="https://openaev.test", token="tok")
    http = build_async_client(settings, transport=httpx.MockTransport(record))
    return OpenAEVClient(http, manager_id=MANAGER), seen


def ok_json(body):
    return lambda request: httpx.Response(200, json=body)


@pytest.mark.parametrize(
    ("call", "method", "path", "body"),
    [
        (
            lambda c: c.register(manager_id=MANAGER, name="n", public_key="SPKI"),
            "POST",
            "/api/xtm-composer/register",
            {"id": MANAGER, "name": "n", "public_key": "SPKI"},
        ),
        (lambda c: c.ping(manager_id=MANAGER), "PUT", f"/api/xtm-composer/{MANAGER}/refresh-connectivity", None),
        (
            lambda c: c.list_connectors(manager_id=MANAGER),
            "GET",
            f"/api/xtm-composer/{MANAGER}/connector-instances",
            None,
        ),
        (
            lambda c: c.report_status("i1", CurrentStatus.STARTED),
            "PUT",
            f"/api/xtm-composer/{MANAGER}/connector-instances/i1/status",
            {"connector_instance_current_status": "started"},
        ),
        (
            lambda c: c.report_logs("i1", ["a", "b"]),
            "POST",
            f"/api/xtm-composer/{MANAGER}/connector-instances/i1/logs",
            {"connector_instance_logs": ["a", "b"]},
        ),
        (
            lambda c: c.report_health("i1", Health(5, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), True)),
            "PUT",
            f"/api/xtm-composer/{MANAGER}/connector-instances/i1/health-check",
            {
                "connector_instance_restart_count": 5,
                "connector_instance_started_at": "2026-01-02T03:04:05Z",
                "connector_instance_is_in_reboot_loop": True,
            },
        ),
    ],
    ids=["register", "ping", "instances", "status", "logs", "health"],
)
async def test_every_call_uses_the_documented_path_and_body(call, method, path, body):
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/settings/version":
            return httpx.Response(200, text="1.18.0")
        if request.url.path.endswith("connector-instances"):
            return httpx.Response(200, json=[])
        return httpx.Response(200, json={"xtm_composer_id": MANAGER, "xtm_composer_version": "1.18.0"})

    client, seen = client_answering(answer)
    await call(client)
    request = next(r for r in seen if r.url.path != "/api/settings/version")
    assert (request.method, request.url.path) == (method, path)
    assert request.headers["authorization"] == "Bearer tok"
    assert (json.loads(request.content) if request.content else None) == body


async def test_version_is_plain_text():
    client, _ = client_answering(lambda r: httpx.Response(200, text="1.18.3\n"))
    assert await client.version() == "1.18.3"


@pytest.mark.parametrize(
    "response",
    [httpx.Response(200), httpx.Response(200, text="ok"), httpx.Response(204), httpx.Response(200, text="<html/>")],
)
async def test_logs_accept_empty_or_non_json_answers(response):
    client, _ = client_answering(lambda r: response)
    await client.report_logs("i1", ["line"])


async def test_one_malformed_instance_is_skipped_and_the_rest_used():
    items = [
        {
            "connector_instance_id": "a",
            "connector_instance_name": "Collector A",
            "connector_image": "img:1",
            "connector_instance_requested_status": "starting",
            "connector_instance_configurations": [
                {"configuration_key": "K", "configuration_value": "v=1", "configuration_is_encrypted": False},
                {"configuration_key": "N", "configuration_value": 5},
                {"configuration_key": "B", "configuration_value": True},
                {"configuration_key": "NULL"},
            ],
        },
        {"connector_instance_id": "b", "connector_instance_name": "No Image"},
        {"connector_instance_name": "No Id", "connector_image": "img:1"},
        {"connector_instance_id": "c", "connector_instance_name": "Minimal", "connector_image": "img:2"},
    ]
    client, _ = client_answering(ok_json(items))
    result = await client.list_connectors(manager_id=MANAGER)
    assert [c.id for c in result.connectors] == ["a", "c"]
    a, c = result.connectors
    assert [(e.key, e.value) for e in a.config] == [("K", "v=1"), ("N", "5"), ("B", "true"), ("NULL", "")]
    assert a.requested_status is RequestedStatus.STARTING and a.contract_hash is None
    assert c.requested_status is RequestedStatus.STOPPING and c.config == ()
    assert result.unparsed_ids == {"b"} and result.complete is False


@pytest.mark.parametrize(
    ("status", "call", "error"),
    [
        (401, lambda c: c.list_connectors(manager_id=MANAGER), PlatformAuthError),
        (404, lambda c: c.list_connectors(manager_id=MANAGER), PlatformAuthError),
        (404, lambda c: c.ping(manager_id=MANAGER), ManagerUnknown),
        (404, lambda c: c.report_status("gone", CurrentStatus.STOPPED), ConnectorGone),
        (500, lambda c: c.list_connectors(manager_id=MANAGER), PlatformUnavailable),
        (503, lambda c: c.ping(manager_id=MANAGER), PlatformUnavailable),
    ],
)
async def test_errors_are_translated(status, call, error):
    client, _ = client_answering(lambda r: httpx.Response(status, json={"message": "nope"}))
    with pytest.raises(error):
        await call(client)


@pytest.mark.parametrize("body", [None, {"items": []}, "text"])
async def test_a_listing_that_is_not_a_list_is_an_error_never_an_empty_list(body):
    client, _ = client_answering(ok_json(body))
    with pytest.raises(PlatformUnavailable):
        await client.list_connectors(manager_id=MANAGER)
