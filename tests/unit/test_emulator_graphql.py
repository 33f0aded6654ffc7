"""The emulator answers the seven OpenCTI operations over real HTTP as the platform does."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from xtm_composer.crypto import (
    decrypt_value,
    generate_private_key,
    load_private_key_file,
    public_key_pkcs1_pem,
    public_key_spki_pem,
)
from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState, iso_timestamp
from xtm_composer.errors import DecryptionError

from ..paths import SHARED_VECTORS

TOKEN = "emulator-test-token"
MANAGER_ID = "8215614c-7139-422e-b825-b20fd2a13a23"

ABOUT = "query { about { version } }"
REGISTER = """mutation Register($input: RegisterConnectorsManagerInput) {
  registerConnectorsManager(input: $input) { id name about_version active }
}"""
PING = """mutation Ping($input: UpdateConnectorManagerStatusInput) {
  updateConnectorManagerStatus(input: $input) { id about_version }
}"""
CONNECTORS = """query Connectors {
  connectorsForManagers {
    id name manager_contract_hash manager_contract_image manager_current_status manager_requested_status
    manager_contract_configuration { key value encrypted }
    manager_connector_logs
    manager_health_metrics { restart_count started_at is_in_reboot_loop last_update }
  }
}"""
REPORT_STATUS = """mutation Status($input: CurrentConnectorStatusInput!) {
  updateConnectorCurrentStatus(input: $input) { id manager_current_status }
}"""
REPORT_LOGS = """mutation Logs($input: LogsConnectorStatusInput!) { updateConnectorLogs(input: $input) }"""
REPORT_HEALTH = """mutation Health($input: HealthConnectorStatusInput!) { updateConnectorHealth(input: $input) }"""


class FakeClock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_780_000_000.0

    def __call__(self) -> float:
        return self.now


class Api:
    """A bare GraphQL client speaking to the emulator over HTTP."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=5.0)

    def post(self, query: str, variables: dict[str, Any] | None = None, *, token: str | None = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.http.post("/graphql", json={"query": query, "variables": variables}, headers=headers)

    def data(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = self.post(query, variables)
        assert response.status_code == 200
        body = response.json()
        assert "errors" not in body, body
        return body["data"]

    def register(self, key: rsa.RSAPrivateKey, manager_id: str = MANAGER_ID, name: str = "composer") -> dict:
        variables = {"input": {"id": manager_id, "name": name, "public_key": public_key_pkcs1_pem(key)}}
        return self.post(REGISTER, variables).json()

    def connectors(self) -> dict[str, dict[str, Any]]:
        return {c["name"]: c for c in self.data(CONNECTORS)["connectorsForManagers"]}


def served(connector: dict[str, Any]) -> list[tuple[str, str | None, bool]]:
    return [(e["key"], e["value"], e["encrypted"]) for e in connector["manager_contract_configuration"]]


def error_codes(body: dict[str, Any]) -> list[str]:
    return [e["extensions"]["code"] for e in body["errors"]]


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> EmulatorState:
    return EmulatorState(token=TOKEN, clock=clock)


@pytest.fixture(scope="module")
def shared_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorState(token=TOKEN)) as running:
        yield running


@pytest.fixture
def server(shared_server: EmulatorServer, state: EmulatorState) -> EmulatorServer:
    """The module's server, now serving this test's fresh state (starting it is the slow part)."""
    shared_server.state = state
    return shared_server.start()


@pytest.fixture
def api(server: EmulatorServer) -> Iterator[Api]:
    client = Api(server.url)
    yield client
    client.http.close()


# -- request level -------------------------------------------------------------------------------


def test_about_answers_the_platform_version_and_follows_a_change(api, state):
    assert api.data(ABOUT) == {"about": {"version": "6.8.3"}}
    state.version = "7.260306.1"
    assert api.data(ABOUT) == {"about": {"version": "7.260306.1"}}


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-token"}, {"Authorization": "Bearer"}, {"Authorization": f"Basic {TOKEN}"}],
    ids=["missing", "wrong", "empty", "basic"],
)
def test_a_missing_or_wrong_token_gets_auth_required_with_null_data(api, headers):
    response = api.http.post("/graphql", json={"query": ABOUT}, headers=headers)
    assert response.status_code == 200
    assert response.json()["data"] is None
    assert error_codes(response.json()) == ["AUTH_REQUIRED"]


def test_a_document_invalid_against_the_schema_gets_validation_failed_with_http_200(api):
    # What the Rust composer sends: an argument the 6.8 schema does not have.
    response = api.post('query { connectorsForManagers(managerId: "m") { id } }')
    assert response.status_code == 200
    assert "data" not in response.json()
    assert error_codes(response.json()) == ["GRAPHQL_VALIDATION_FAILED"]


def test_a_syntax_error_gets_parse_failed_and_a_non_json_body_a_400(api):
    assert error_codes(api.post("query { about {").json()) == ["GRAPHQL_PARSE_FAILED"]
    response = api.http.post("/graphql", content=b"not json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 400


def test_outage_answers_502_with_an_html_page_until_switched_off(api, state):
    state.outage = True
    response = api.post(ABOUT)
    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in response.text
    state.outage = False
    assert api.data(ABOUT)["about"]["version"] == "6.8.3"


def test_a_restarted_server_on_the_same_port_keeps_its_state(server, api, state, key):
    api.register(key)
    state.add_connector("MITRE ATT&CK", "img:1")
    url = server.url
    server.stop()
    with pytest.raises(httpx.TransportError):
        api.post(ABOUT)
    server.start()
    assert server.url == url
    assert api.data(PING, {"input": {"id": MANAGER_ID}})["updateConnectorManagerStatus"]["id"] == MANAGER_ID
    assert list(api.connectors()) == ["MITRE ATT&CK"]


# -- manager registration and ping -------------------------------------------------------------


def test_register_creates_the_manager_then_updates_its_name_for_the_same_id(api, state, key):
    first = api.register(key)
    assert first["data"]["registerConnectorsManager"] == {
        "id": MANAGER_ID,
        "name": "composer",
        "about_version": "6.8.3",
        "active": True,
    }
    api.register(key, name="renamed")
    manager = state.manager()
    assert manager is not None and manager.name == "renamed"


def test_a_second_manager_id_is_refused_with_unsupported_error(api, key):
    api.register(key)
    body = api.register(key, manager_id="another-manager")
    assert body["data"] == {"registerConnectorsManager": None}
    assert error_codes(body) == ["UNSUPPORTED_ERROR"]
    assert body["errors"][0]["message"] == "Only one connector manager is supported per instance"


def test_an_spki_public_key_is_accepted_too(api, key, state):
    variables = {"input": {"id": MANAGER_ID, "name": "c", "public_key": public_key_spki_pem(key)}}
    assert api.data(REGISTER, variables)["registerConnectorsManager"]["id"] == MANAGER_ID


def test_a_public_key_that_is_not_pem_is_a_functional_error(api):
    body = api.post(REGISTER, {"input": {"id": MANAGER_ID, "name": "c", "public_key": "not a key"}}).json()
    assert body["data"] == {"registerConnectorsManager": None}
    assert error_codes(body) == ["FUNCTIONAL_ERROR"]


def test_ping_answers_the_version_and_fails_for_an_unknown_or_forgotten_manager(api, state, key, clock):
    unknown = api.post(PING, {"input": {"id": MANAGER_ID}}).json()
    assert unknown["data"] == {"updateConnectorManagerStatus": None}
    assert error_codes(unknown) == ["FUNCTIONAL_ERROR"]
    assert unknown["errors"][0]["message"] == "Cant find element to update"

    api.register(key)
    clock.now += 60
    assert api.data(PING, {"input": {"id": MANAGER_ID}})["updateConnectorManagerStatus"]["about_version"] == "6.8.3"
    manager = state.manager()
    assert manager is not None and manager.last_ping == clock.now

    state.forget_manager()
    assert error_codes(api.post(PING, {"input": {"id": MANAGER_ID}}).json()) == ["FUNCTIONAL_ERROR"]


# -- connectors and secrets ----------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2])
def test_secrets_are_served_encrypted_for_the_registered_key_in_the_selected_format(api, state, key, version):
    state.encryption_version = version
    api.register(key)
    tricky = 'a=b=c\nline2 "quoted" é威胁 $HOME'
    created = state.add_connector(
        "Abuse.ch URLhaus",
        "opencti/connector-urlhaus:6.8.3",
        config={"URLHAUS_CSV_URL": "https://x/?a=1&b=2", "CONNECTOR_LOG_LEVEL": "info"},
        secrets={"URLHAUS_API_KEY": tricky},
        connector_type="INTERNAL_ENRICHMENT",
    )
    connector = api.connectors()["Abuse.ch URLhaus"]
    entries = served(connector)
    assert [k for k, _, _ in entries] == [
        "URLHAUS_CSV_URL",
        "CONNECTOR_LOG_LEVEL",
        "URLHAUS_API_KEY",
        "CONNECTOR_ID",
        "CONNECTOR_NAME",
        "CONNECTOR_TYPE",
        "OPENCTI_URL",
        "OPENCTI_TOKEN",
    ]
    plain = {k: v for k, v, encrypted in entries if not encrypted}
    assert plain == {
        "URLHAUS_CSV_URL": "https://x/?a=1&b=2",
        "CONNECTOR_LOG_LEVEL": "info",
        "CONNECTOR_ID": created.id,
        "CONNECTOR_NAME": "Abuse.ch URLhaus",
        "CONNECTOR_TYPE": "INTERNAL_ENRICHMENT",
        "OPENCTI_URL": state.public_url,
    }
    secrets = {k: v for k, v, encrypted in entries if encrypted}
    assert set(secrets) == {"URLHAUS_API_KEY", "OPENCTI_TOKEN"}
    for blob in secrets.values():
        assert blob is not None and base64.b64decode(blob)[0] == version
    assert decrypt_value(secrets["URLHAUS_API_KEY"], key) == tricky
    assert len(decrypt_value(secrets["OPENCTI_TOKEN"], key)) == 36


def test_secrets_saved_before_any_registration_are_served_null_then_encrypted_at_registration(api, state, key):
    state.add_connector("AlienVault OTX", "img:1", config={"ALIENVAULT_TLP": "White"}, secrets={"API_KEY": "k-1"})
    before = served(api.connectors()["AlienVault OTX"])
    assert ("API_KEY", None, True) in before and ("OPENCTI_TOKEN", None, True) in before
    assert ("ALIENVAULT_TLP", "White", False) in before

    api.register(key)
    after = {k: v for k, v, encrypted in served(api.connectors()["AlienVault OTX"]) if encrypted}
    assert decrypt_value(after["API_KEY"], key) == "k-1"


def test_re_registration_with_a_new_key_leaves_existing_values_under_the_old_key(api, state, key):
    api.register(key)
    old = state.add_connector("Old", "img:1", secrets={"API_KEY": "saved-under-old-key"})
    new_key = generate_private_key()
    api.register(new_key)
    state.add_connector("New", "img:1", secrets={"API_KEY": "saved-under-new-key"})
    state.edit_connector(old.id, secrets={"OTHER_KEY": "edited-under-new-key"})

    old_blobs = {k: v for k, v, encrypted in served(api.connectors()["Old"]) if encrypted}
    new_blobs = {k: v for k, v, encrypted in served(api.connectors()["New"]) if encrypted}
    assert decrypt_value(old_blobs["API_KEY"], key) == "saved-under-old-key"
    with pytest.raises(DecryptionError):
        decrypt_value(old_blobs["API_KEY"], new_key)
    assert decrypt_value(old_blobs["OTHER_KEY"], new_key) == "edited-under-new-key"
    assert decrypt_value(new_blobs["API_KEY"], new_key) == "saved-under-new-key"
    with pytest.raises(DecryptionError):
        decrypt_value(new_blobs["API_KEY"], key)


def test_a_platform_upgrade_to_v2_serves_a_mix_of_v1_and_v2_blobs(api, state, key):
    api.register(key)
    connector = state.add_connector("Mixed", "img:1", secrets={"A": "first"})
    state.encryption_version = 2
    state.edit_connector(connector.id, secrets={"B": "second"})
    blobs = {k: v for k, v, encrypted in served(api.connectors()["Mixed"]) if encrypted}
    assert {k: base64.b64decode(v)[0] for k, v in blobs.items()} == {"A": 1, "B": 2, "OPENCTI_TOKEN": 1}
    assert (decrypt_value(blobs["A"], key), decrypt_value(blobs["B"], key)) == ("first", "second")


def test_the_hash_changes_on_image_edit_config_edit_and_reset_but_not_on_start_stop(api, state):
    connector = state.add_connector("Hashed", "img:1", config={"A": "1"}, secrets={"S": "x"})

    def current() -> str:
        return api.connectors()["Hashed"]["manager_contract_hash"]

    seen = [current()]
    state.start_connector(connector.id)
    state.stop_connector(connector.id)
    assert current() == seen[-1]
    for edit in ({"image": "img:2"}, {"config": {"A": "2"}}, {"config": {"NEW": "v"}}, {"secrets": {"S": "y"}}):
        state.edit_connector(connector.id, **edit)
        assert current() not in seen, edit
        seen.append(current())
    state.reset_connector(connector.id)
    assert current() not in seen


def test_new_connectors_are_stopped_unless_asked_to_start_and_status_follows_requests(api, state):
    idle = state.add_connector("Idle", "img:1")
    state.add_connector("Eager", "img:1", start=True)
    connectors = api.connectors()
    assert connectors["Idle"]["manager_requested_status"] == "stopped"
    assert connectors["Eager"]["manager_requested_status"] == "starting"
    assert connectors["Idle"]["manager_current_status"] is None
    state.start_connector(idle.id)
    assert api.connectors()["Idle"]["manager_requested_status"] == "starting"
    state.stop_connector(idle.id)
    assert api.connectors()["Idle"]["manager_requested_status"] == "stopping"


# -- reports from the manager --------------------------------------------------------------------


def test_current_status_reports_are_stored_and_recorded_in_order(api, state):
    connector = state.add_connector("Reported", "img:1", start=True)
    for status in ("stopped", "started"):
        answer = api.data(REPORT_STATUS, {"input": {"id": connector.id, "status": status}})
        assert answer["updateConnectorCurrentStatus"] == {"id": connector.id, "manager_current_status": status}
    assert api.connectors()["Reported"]["manager_current_status"] == "started"
    assert [(r.connector_id, r.status) for r in state.status_history()] == [
        (connector.id, "stopped"),
        (connector.id, "started"),
    ]


def test_a_status_outside_the_enum_is_rejected_as_bad_user_input(api, state):
    connector = state.add_connector("Strict", "img:1")
    body = api.post(REPORT_STATUS, {"input": {"id": connector.id, "status": "running"}}).json()
    assert error_codes(body) == ["BAD_USER_INPUT"]
    assert state.connector(connector.id).current_status is None


def test_reports_for_an_unknown_connector_null_a_nullable_field_and_the_whole_data_for_id(api):
    status = api.post(REPORT_STATUS, {"input": {"id": "missing", "status": "started"}}).json()
    assert status["data"] == {"updateConnectorCurrentStatus": None}
    assert error_codes(status) == ["FUNCTIONAL_ERROR"]
    logs = api.post(REPORT_LOGS, {"input": {"id": "missing", "logs": ["x"]}}).json()
    assert logs["data"] is None
    assert error_codes(logs) == ["FUNCTIONAL_ERROR"]


def test_each_logs_push_replaces_the_previous_lines(api, state):
    connector = state.add_connector("Chatty", "img:1")
    answer = api.data(REPORT_LOGS, {"input": {"id": connector.id, "logs": ["one", "two"]}})
    assert answer == {"updateConnectorLogs": connector.id}
    api.data(REPORT_LOGS, {"input": {"id": connector.id, "logs": ["three"]}})
    assert api.connectors()["Chatty"]["manager_connector_logs"] == ["three"]


def test_health_is_served_with_its_timestamp_until_it_expires_after_300_seconds(api, state, clock):
    connector = state.add_connector("Healthy", "img:1")
    health = {"restart_count": 4, "started_at": "2026-01-02T03:04:05.000Z", "is_in_reboot_loop": True}
    answer = api.data(REPORT_HEALTH, {"input": {"id": connector.id, **health}})
    assert answer == {"updateConnectorHealth": connector.id}
    reported_at = clock.now
    clock.now += 300
    metrics = api.connectors()["Healthy"]["manager_health_metrics"]
    assert metrics is not None
    assert {k: metrics[k] for k in health} == health
    assert metrics["last_update"] == iso_timestamp(reported_at)
    clock.now += 1
    assert api.connectors()["Healthy"]["manager_health_metrics"] is None


def test_every_operation_is_counted_under_its_field_name(api, state, key):
    api.data(ABOUT)
    api.data(ABOUT)
    api.register(key)
    api.post(ABOUT, token="bad")
    calls = state.stats()
    assert calls["about"] == 2
    assert calls["registerConnectorsManager"] == 1
    assert calls["auth_failures"] == 1
    assert calls["graphql_requests"] == 4
