"""The OpenCTI client: documents valid against the real schema, errors translated at the edge."""

from __future__ import annotations

import json

import graphql
import httpx
import pytest

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.domain import CurrentStatus, RequestedStatus
from xtm_composer.errors import PlatformAuthError, PlatformRejected, PlatformUnavailable, PlatformUnsupported
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import ALL_DOCUMENTS, OpenCTIClient

from ..paths import OPENCTI_SCHEMA


@pytest.fixture(scope="module")
def real_schema() -> graphql.GraphQLSchema:
    return graphql.build_schema(OPENCTI_SCHEMA.read_text())


@pytest.mark.parametrize("document", ALL_DOCUMENTS, ids=lambda d: d.split("(")[0].split("{")[0].strip())
def test_every_document_validates_against_the_real_opencti_schema(real_schema, document):
    assert graphql.validate(real_schema, graphql.parse(document)) == []


def client_answering(handler) -> tuple[OpenCTIClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = PlatformSettings(enable=True, url="http://platform.test", token="tok-123")
    return OpenCTIClient(build_async_client(settings, transport=httpx.MockTransport(record))), seen


def graphql_error(code: str, message: str = "boom", data=None) -> httpx.Response:
    return httpx.Response(200, json={"data": data, "errors": [{"message": message, "extensions": {"code": code}}]})


async def test_requests_carry_the_bearer_token_and_variables():
    client, seen = client_answering(
        lambda r: httpx.Response(
            200, json={"data": {"registerConnectorsManager": {"id": "m", "about_version": "6.8.3"}}}
        )
    )
    assert await client.register(manager_id="m", name="n", public_key="PEM") == "6.8.3"
    body = json.loads(seen[0].content)
    assert seen[0].headers["authorization"] == "Bearer tok-123"
    assert seen[0].url.path == "/graphql"
    assert body["variables"] == {"input": {"id": "m", "name": "n", "public_key": "PEM"}}


@pytest.mark.parametrize(
    ("response", "error", "code"),
    [
        (graphql_error("AUTH_REQUIRED", "You must be logged in"), PlatformAuthError, "AUTH_REQUIRED"),
        (graphql_error("FORBIDDEN_ACCESS"), PlatformAuthError, "FORBIDDEN_ACCESS"),
        (
            graphql_error("UNSUPPORTED_ERROR", "Only one connector manager is supported per instance"),
            PlatformRejected,
            "UNSUPPORTED_ERROR",
        ),
        (
            graphql_error("GRAPHQL_VALIDATION_FAILED", 'Cannot query field "connectorsForManagers"'),
            PlatformUnsupported,
            "GRAPHQL_VALIDATION_FAILED",
        ),
        (
            httpx.Response(502, text="<html>Bad gateway</html>", headers={"content-type": "text/html"}),
            PlatformUnavailable,
            None,
        ),
        (
            httpx.Response(200, text="<html>login</html>", headers={"content-type": "text/html"}),
            PlatformUnavailable,
            None,
        ),
        (httpx.Response(200, json={"data": {"connectorsForManagers": None}}), PlatformUnavailable, None),
        (httpx.Response(200, json={"data": None}), PlatformUnavailable, None),
    ],
    ids=["auth", "forbidden", "second-manager", "too-old", "502-html", "200-html", "null-list", "null-data"],
)
async def test_platform_failures_become_typed_errors_and_never_an_empty_list(response, error, code):
    client, _ = client_answering(lambda r: response)
    with pytest.raises(error) as info:
        await client.list_connectors(manager_id="m")
    assert getattr(info.value, "code", None) == code


async def test_transport_failures_are_platform_unavailable():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    client, _ = client_answering(refuse)
    with pytest.raises(PlatformUnavailable):
        await client.ping(manager_id="m")


async def test_timeouts_are_platform_unavailable():
    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)

    client, _ = client_answering(slow)
    with pytest.raises(PlatformUnavailable, match="timed out"):
        await client.version()


async def test_connectors_are_parsed_and_a_malformed_one_is_skipped_without_losing_its_id():
    items = [
        {
            "id": "c1",
            "name": "MITRE",
            "manager_contract_hash": "h",
            "manager_contract_image": "img:1",
            "manager_current_status": None,
            "manager_requested_status": "starting",
            "manager_contract_configuration": [
                {"key": "A", "value": "x=y=z", "encrypted": False},
                {"key": "B", "value": "blob", "encrypted": True},
                {"key": "C", "value": None, "encrypted": None},
            ],
        },
        {"id": "c2", "name": "broken", "manager_contract_image": None},
        {"name": "no id at all"},
    ]
    client, _ = client_answering(lambda r: httpx.Response(200, json={"data": {"connectorsForManagers": items}}))
    result = await client.list_connectors(manager_id="m")
    (c1,) = result.connectors
    assert c1.requested_status is RequestedStatus.STARTING and c1.current_status is None
    assert [(e.key, e.value, e.encrypted) for e in c1.config] == [
        ("A", "x=y=z", False),
        ("B", "blob", True),
        ("C", "", False),
    ]
    assert result.unparsed_ids == {"c2"} and result.complete is False


async def test_status_and_health_variables_match_the_schema_inputs(real_schema):
    client, seen = client_answering(lambda r: httpx.Response(200, json={"data": {"x": "id"}}))
    from datetime import UTC, datetime

    from xtm_composer.domain import Health

    await client.report_status("c1", CurrentStatus.STARTED)
    await client.report_health(
        "c1", Health(restart_count=4, started_at=datetime(2026, 1, 2, tzinfo=UTC), is_in_reboot_loop=True)
    )
    await client.report_logs("c1", ["a", "b"])
    for request in seen:
        body = json.loads(request.content)
        result = graphql.validate(real_schema, graphql.parse(body["query"]))
        assert result == []
        coerced = graphql.execute_sync(real_schema, graphql.parse(body["query"]), variable_values=body["variables"])
        assert not [e for e in (coerced.errors or []) if "Variable" in e.message]
    assert json.loads(seen[1].content)["variables"]["input"]["started_at"] == "2026-01-02T00:00:00Z"


async def test_an_id_listed_twice_makes_both_entries_unusable():
    entry = {"id": "dup", "name": "A", "manager_contract_image": "img:1", "manager_requested_status": "starting"}
    items = [entry, {**entry, "name": "B"}, {**entry, "id": "ok"}]
    client, _ = client_answering(lambda r: httpx.Response(200, json={"data": {"connectorsForManagers": items}}))
    result = await client.list_connectors(manager_id="m")
    assert [c.id for c in result.connectors] == ["ok"] and result.unparsed_ids == {"dup"}
