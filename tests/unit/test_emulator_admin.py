"""The admin API, its client and the `emulator` CLI drive a running emulator like a platform user."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from typer.testing import CliRunner

from xtm_composer.crypto import decrypt_value, load_private_key_file, public_key_pkcs1_pem
from xtm_composer.emulator.cli import app
from xtm_composer.emulator.client import EmulatorAdmin, EmulatorAdminError
from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState

from ..paths import SHARED_VECTORS

TOKEN = "admin-test-token"
SECRET = "sk-live-never-shown"


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem")


@pytest.fixture(scope="module")
def shared_server() -> Iterator[EmulatorServer]:
    with EmulatorServer(EmulatorState(token=TOKEN)) as running:
        yield running


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState(token=TOKEN)


@pytest.fixture
def server(shared_server: EmulatorServer, state: EmulatorState) -> EmulatorServer:
    shared_server.state = state
    return shared_server


@pytest.fixture
def admin(server: EmulatorServer) -> Iterator[EmulatorAdmin]:
    with EmulatorAdmin(server.url, TOKEN) as client:
        yield client


# -- admin API through the client ---------------------------------------------------------------


def test_the_admin_api_refuses_a_wrong_token(server):
    with EmulatorAdmin(server.url, "wrong") as client, pytest.raises(EmulatorAdminError) as info:
        client.list()
    assert info.value.status == 401


def test_a_connector_added_through_the_api_is_listed_without_its_secret_values(admin, state):
    created = admin.add_connector(
        "AlienVault OTX",
        "opencti/connector-alienvault:6.8.3",
        config={"ALIENVAULT_INTERVAL_SEC": "1800", "URL": "https://x/?a=1&b=2"},
        secrets={"ALIENVAULT_API_KEY": SECRET},
        type="EXTERNAL_IMPORT",
        start=True,
    )
    assert created["requested_status"] == "starting" and created["current_status"] is None
    assert created["config"] == {"ALIENVAULT_INTERVAL_SEC": "1800", "URL": "https://x/?a=1&b=2"}
    assert created["secret_keys"] == ["ALIENVAULT_API_KEY"]
    assert created["pending_secret_keys"] == ["ALIENVAULT_API_KEY", "OPENCTI_TOKEN"]  # no manager yet
    assert [c["id"] for c in admin.list()] == [created["id"]]
    assert admin.get(created["id"])["hash"] == created["hash"] == state.connector(created["id"]).contract_hash
    everything = json.dumps([admin.list(), admin.get(created["id"]), admin.stats()])
    assert SECRET not in everything


def test_edits_through_the_api_change_the_hash_and_start_stop_do_not(admin):
    created = admin.add_connector("CISA KEV", "img:1", config={"CISA_INTERVAL": "2"})
    started = admin.start(created["id"])
    stopped = admin.stop(created["id"])
    assert (started["requested_status"], stopped["requested_status"]) == ("starting", "stopping")
    assert started["hash"] == stopped["hash"] == created["hash"]
    by_image = admin.edit(created["id"], image="img:2")
    by_config = admin.edit(created["id"], config={"CISA_INTERVAL": "3"})
    by_reset = admin.reset(created["id"])
    hashes = [created["hash"], by_image["hash"], by_config["hash"], by_reset["hash"]]
    assert len(set(hashes)) == 4
    removed = admin.edit(created["id"], name="CISA", config={"CISA_INTERVAL": None})
    assert removed["name"] == "CISA" and removed["config"] == {}


def test_api_errors_carry_the_status_and_a_message(admin):
    admin.add_connector("Dup", "img:1")
    with pytest.raises(EmulatorAdminError) as duplicate:
        admin.add_connector("Dup", "img:1")
    assert duplicate.value.status == 409 and "already exists" in str(duplicate.value)
    with pytest.raises(EmulatorAdminError) as missing:
        admin.start("no-such-id")
    assert missing.value.status == 404
    with pytest.raises(EmulatorAdminError) as invalid:
        admin.set_platform(encryption=3)
    assert invalid.value.status == 400


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "/admin/connectors", {"name": "n", "image": "i", "colour": "red"}, 400),
        ("POST", "/admin/connectors", {"name": "n", "image": "i", "config": ["A=1"]}, 400),
        ("POST", "/admin/connectors", {"name": "n", "image": "i", "start": "yes"}, 400),
        ("POST", "/admin/connectors", {"image": "i"}, 400),
        ("PUT", "/admin/platform", {"encryption": True}, 400),
        ("POST", "/admin/connectors/x/explode", None, 404),
        ("GET", "/admin/nothing-here", None, 404),
    ],
    ids=["unknown-field", "config-not-object", "start-not-bool", "no-name", "bool-encryption", "action", "route"],
)
def test_malformed_admin_requests_get_a_json_4xx(server, method, path, body, status):
    response = httpx.request(method, f"{server.url}{path}", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == status
    assert response.json()["error"]


def test_delete_removes_the_connector(admin):
    created = admin.add_connector("Temp", "img:1")
    admin.delete(created["id"])
    assert admin.list() == []
    assert admin.find("Temp") is None


def test_manager_forget_and_platform_settings_are_visible_through_the_api(admin, server, state, key):
    assert admin.manager() is None
    state.register_manager("m-1", "composer", public_key_pkcs1_pem(key))
    assert admin.manager()["id"] == "m-1"
    assert admin.forget_manager() is True
    assert admin.manager() is None
    platform = admin.set_platform(version="7.260306.1", encryption=2, public_url="http://opencti:8080")
    assert platform == {
        "version": "7.260306.1",
        "encryption": 2,
        "outage": False,
        "public_url": "http://opencti:8080",
        "fault": None,
        "permission": True,
        "kind": "opencti",
    }
    assert state.version == "7.260306.1"
    assert admin.set_platform(outage=True)["outage"] is True
    assert httpx.post(f"{server.url}/graphql", json={"query": "{ about { version } }"}).status_code == 502
    assert httpx.get(f"{server.url}/health").status_code == 200


def test_stats_count_graphql_calls_and_history_lists_status_reports(admin, server, state):
    created = admin.add_connector("Counted", "img:1")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    report = {
        "query": "mutation($i: CurrentConnectorStatusInput!) { updateConnectorCurrentStatus(input: $i) { id } }",
        "variables": {"i": {"id": created["id"], "status": "started"}},
    }
    for payload in ({"query": "{ about { version } }"}, report):
        httpx.post(f"{server.url}/graphql", json=payload, headers=headers).raise_for_status()
    stats = admin.stats()
    assert stats["calls"]["about"] == 1 and stats["calls"]["updateConnectorCurrentStatus"] == 1
    assert stats["status_reports"] == 1 and stats["connectors"] == 1
    assert [(h["connector_id"], h["status"]) for h in admin.history()] == [(created["id"], "started")]


def test_an_unreachable_emulator_is_a_one_line_client_error():
    with EmulatorAdmin("http://127.0.0.1:9", TOKEN, timeout=2) as client, pytest.raises(EmulatorAdminError) as info:
        client.list()
    assert info.value.status is None and "cannot reach" in str(info.value)


# -- CLI ------------------------------------------------------------------------------------------


def cli(server: EmulatorServer, *args: str):
    return CliRunner().invoke(app, [*args, "--url", server.url, "--token", TOKEN])


def test_cli_add_splits_pairs_on_the_first_equals_and_keeps_secrets_secret(server, state, key):
    state.register_manager("m-1", "composer", public_key_pkcs1_pem(key))
    result = cli(
        server, "add", "--name", "URLhaus", "--image", "img:1",
        "--config", "URL=https://x/?a=1&b=2", "--config", "EMPTY=", "--secret", f"API_KEY={SECRET}=x", "--start",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    connector = state.connector(result.stdout.strip())
    assert connector.config == (("URL", "https://x/?a=1&b=2"), ("EMPTY", ""))
    assert connector.requested_status == "starting"
    blob = next(e.value for e in connector.contract_configuration if e.key == "API_KEY")
    assert blob is not None and decrypt_value(blob, key) == f"{SECRET}=x"


def test_cli_list_prints_a_table_and_json(server, state):
    state.add_connector("MITRE ATT&CK", "img:1", start=True)
    table = cli(server, "list")
    assert table.exit_code == 0
    assert "MITRE ATT&CK" in table.stdout and "starting" in table.stdout
    listed = json.loads(cli(server, "list", "--json").stdout)
    assert [c["name"] for c in listed] == ["MITRE ATT&CK"]


def test_cli_start_stop_edit_reset_and_delete_act_on_the_platform(server, state):
    connector = state.add_connector("Driven", "img:1", config={"A": "1", "B": "2"})
    assert cli(server, "start", connector.id).exit_code == 0
    assert state.connector(connector.id).requested_status == "starting"
    assert cli(server, "stop", connector.id).exit_code == 0
    assert state.connector(connector.id).requested_status == "stopping"
    edited = cli(
        server, "edit", connector.id, "--image", "img:2", "--config", "A=x=y", "--secret", "S=s", "--unset", "B"
    )
    assert edited.exit_code == 0, edited.output
    after = state.connector(connector.id)
    assert (after.image, after.config, after.secret_keys) == ("img:2", (("A", "x=y"),), ("S",))
    assert after.contract_hash != connector.contract_hash
    assert cli(server, "reset", connector.id).exit_code == 0
    assert state.connector(connector.id).contract_hash != after.contract_hash
    assert cli(server, "delete", connector.id).exit_code == 0
    assert state.connectors() == []


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["start", "no-such-id"], 1),
        (["add", "--name", "n", "--image", "i", "--config", "NO_EQUALS"], 2),
        (["edit", "some-id"], 2),
    ],
    ids=["unknown-id", "pair-without-equals", "edit-nothing"],
)
def test_cli_errors_are_one_line_and_exit_non_zero(server, args, code):
    result = cli(server, *args)
    assert result.exit_code == code
    assert len(result.output.strip().splitlines()) == 1
    assert result.output.startswith("error: ")


def test_cli_against_an_unreachable_emulator_fails_in_one_line():
    result = CliRunner().invoke(app, ["list", "--url", "http://127.0.0.1:9", "--token", TOKEN])
    assert result.exit_code == 1
    assert len(result.output.strip().splitlines()) == 1 and "cannot reach" in result.output


def test_cli_serve_refuses_an_unknown_encryption_version():
    result = CliRunner().invoke(app, ["serve", "--encryption", "3"])
    assert result.exit_code == 2


def test_cli_serve_on_a_port_already_taken_fails_in_one_line(server):
    result = CliRunner().invoke(app, ["serve", "--port", str(server.port)])
    assert result.exit_code == 1
    assert result.output.strip().splitlines()[-1].startswith("error: cannot listen")
