"""The OpenAEV emulator over HTTP: REST paths, 401/404 rules, SPKI-only registration, v1 secrets,
logs kept as the set of lines of the 3 newest pushes."""

from __future__ import annotations

import base64

import httpx
import pytest

from xtm_composer.crypto import decrypt_value, load_private_key_file, public_key_pkcs1_pem, public_key_spki_pem
from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState

from ..paths import SHARED_VECTORS

KEY = load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem")
M = "aev-manager"


@pytest.fixture
def aev():
    state = EmulatorState(token="T", kind="openaev")
    with EmulatorServer(state) as server, httpx.Client(base_url=server.url, headers={"Authorization": "Bearer T"}) as c:
        yield state, c


def register(client):
    return client.post(
        "/api/xtm-composer/register", json={"id": M, "name": "n", "public_key": public_key_spki_pem(KEY)}
    )


def test_registration_takes_spki_and_refuses_pkcs1(aev):
    _, client = aev
    refused = client.post(
        "/api/xtm-composer/register", json={"id": M, "name": "n", "public_key": public_key_pkcs1_pem(KEY)}
    )
    assert refused.status_code == 400
    answer = register(client)
    assert answer.status_code == 200 and answer.json()["xtm_composer_id"] == M


def test_instances_carry_v1_secrets_and_omit_nulls(aev):
    state, client = aev
    register(client)
    created = state.add_connector("Collector", "img:1", config={"A": "1"}, secrets={"S": "s3cr=t"}, start=True)
    (instance,) = client.get(f"/api/xtm-composer/{M}/connector-instances").json()
    assert "connector_instance_current_status" not in instance  # null: omitted
    entries = {e["configuration_key"]: e for e in instance["connector_instance_configurations"]}
    secret = entries["S"]
    assert secret["configuration_is_encrypted"] is True
    assert base64.b64decode(secret["configuration_value"])[0] == 1
    assert decrypt_value(secret["configuration_value"], KEY) == "s3cr=t"
    assert "OPENAEV_URL" in entries and entries["OPENAEV_TOKEN"]["configuration_is_encrypted"] is True
    assert instance["connector_instance_id"] == created.id


def test_logs_keep_the_set_of_lines_of_the_three_newest_pushes_and_answer_empty(aev):
    state, client = aev
    register(client)
    cid = state.add_connector("C", "img:1").id
    for push in (["a", "b"], ["b", "c"], ["d"], ["e", "e"]):
        answer = client.post(
            f"/api/xtm-composer/{M}/connector-instances/{cid}/logs", json={"connector_instance_logs": push}
        )
        assert answer.status_code == 200 and answer.content == b""
    assert sorted(state.connector(cid).logs) == ["b", "c", "d", "e"]


def test_status_and_health_are_stored(aev):
    state, client = aev
    register(client)
    cid = state.add_connector("C", "img:1").id
    base = f"/api/xtm-composer/{M}/connector-instances/{cid}"
    assert client.put(f"{base}/status", json={"connector_instance_current_status": "started"}).status_code == 200
    health = {
        "connector_instance_restart_count": 4,
        "connector_instance_started_at": "2026-01-01T00:00:00Z",
        "connector_instance_is_in_reboot_loop": True,
    }
    assert client.put(f"{base}/health-check", json=health).status_code == 200
    view = state.connector(cid)
    assert view.current_status == "started" and view.health.restart_count == 4 and view.health.is_in_reboot_loop


def test_bad_token_is_401_missing_permission_and_unknown_ids_are_404(aev):
    state, client = aev
    register(client)
    assert (
        client.get(f"/api/xtm-composer/{M}/connector-instances", headers={"Authorization": "Bearer x"}).status_code
        == 401
    )
    assert client.put("/api/xtm-composer/other/refresh-connectivity").status_code == 404
    assert (
        client.put(
            f"/api/xtm-composer/{M}/connector-instances/nope/status",
            json={"connector_instance_current_status": "started"},
        ).status_code
        == 404
    )
    state.set_platform(permission=False)
    assert client.get(f"/api/xtm-composer/{M}/connector-instances").status_code == 404
    assert client.get("/api/settings/version").text == state.version


def test_an_opencti_emulator_does_not_serve_the_rest_api():
    state = EmulatorState(token="T")
    with EmulatorServer(state) as server:
        assert httpx.get(f"{server.url}/api/settings/version", headers={"Authorization": "Bearer T"}).status_code == 404
