"""The emulator's store keeps the platform's rules without any HTTP in between."""

from __future__ import annotations

import threading

import pytest

from xtm_composer.emulator.errors import ConflictError, EmulatorError, NotFoundError
from xtm_composer.emulator.seed import DEMO_CONNECTORS, seed_demo
from xtm_composer.emulator.state import EmulatorState, iso_timestamp


@pytest.fixture
def state() -> EmulatorState:
    return EmulatorState()


def test_connector_names_are_unique_on_add_and_on_rename(state):
    first = state.add_connector("MITRE ATT&CK", "img:1")
    second = state.add_connector("mitre att&ck", "img:1")  # differs: collapses only as a container name
    with pytest.raises(ConflictError):
        state.add_connector("MITRE ATT&CK", "img:2")
    with pytest.raises(ConflictError):
        state.edit_connector(second.id, name="MITRE ATT&CK")
    assert state.edit_connector(first.id, name="MITRE ATT&CK").name == "MITRE ATT&CK"


def test_edits_merge_keep_positions_append_new_keys_and_remove_none(state):
    connector = state.add_connector("C", "img:1", config={"A": "1", "B": "2", "C": "3"}, secrets={"S": "s"})
    edited = state.edit_connector(connector.id, config={"B": "20", "D": "4", "A": None}, secrets={"T": "t"})
    assert edited.config == (("B", "20"), ("C", "3"), ("D", "4"))
    assert edited.secret_keys == ("S", "T")
    stored = [e.key for e in edited.contract_configuration][:5]
    assert stored == ["B", "C", "S", "D", "T"]


def test_a_key_moved_from_config_to_secrets_becomes_sensitive(state):
    connector = state.add_connector("C", "img:1", config={"API_KEY": "k"})
    edited = state.edit_connector(connector.id, secrets={"API_KEY": "k"})
    assert edited.config == () and edited.secret_keys == ("API_KEY",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"name": "", "image": "img"},
        {"name": "n", "image": " "},
        {"name": "n", "image": "img", "config": {"A": 1}},
        {"name": "n", "image": "img", "config": {"A": "1"}, "secrets": {"A": "2"}},
        {"name": "n", "image": "img", "connector_type": "NOT_A_TYPE"},
    ],
    ids=["empty-name", "blank-image", "non-string-value", "key-twice", "bad-type"],
)
def test_invalid_connectors_are_refused(state, kwargs):
    with pytest.raises(EmulatorError):
        state.add_connector(**kwargs)
    assert state.connectors() == []


def test_unknown_ids_are_not_found_for_every_operation(state):
    for call in (
        lambda: state.connector("x"),
        lambda: state.edit_connector("x", image="i"),
        lambda: state.delete_connector("x"),
        lambda: state.start_connector("x"),
        lambda: state.reset_connector("x"),
        lambda: state.report_logs("x", []),
    ):
        with pytest.raises(NotFoundError):
            call()


def test_platform_settings_are_checked_before_any_is_applied(state):
    with pytest.raises(EmulatorError):
        state.set_platform(version="7.0.0", encryption_version=3)
    assert state.platform().version == "6.8.3"
    assert state.set_platform(version="7.0.0", encryption_version=2, outage=True).encryption_version == 2


def test_the_token_check_needs_the_exact_token(state):
    assert state.check_token("ChangeMe")
    assert not state.check_token("changeme")
    assert not state.check_token(None)


def test_a_deleted_connector_disappears_and_its_name_is_free_again(state):
    connector = state.add_connector("Gone", "img:1")
    state.delete_connector(connector.id)
    assert state.connectors() == []
    assert state.add_connector("Gone", "img:1").id != connector.id


def test_iso_timestamps_are_utc_with_milliseconds():
    assert iso_timestamp(0.5) == "1970-01-01T00:00:00.500Z"


def test_the_demo_seed_adds_realistic_connectors_three_starting_one_stopped(state):
    seeded = seed_demo(state, image="xtm-composer/demo-connector:1")
    assert [c.name for c in seeded] == [d.name for d in DEMO_CONNECTORS]
    assert {c.image for c in seeded} == {"xtm-composer/demo-connector:1"}
    assert sorted(c.requested_status for c in seeded) == ["starting", "starting", "starting", "stopped"]
    assert any(c.secret_keys for c in seeded)
    assert all(dict(c.config).get("CONNECTOR_LOG_LEVEL") for c in seeded)
    assert any(value.count("=") >= 2 for c in seeded for _, value in c.config)  # a URL with a query string


def test_concurrent_writers_lose_no_update(state):
    connector = state.add_connector("Busy", "img:1")

    def work(worker: int) -> None:
        for i in range(50):
            state.add_connector(f"w{worker}-{i}", "img:1")
            state.report_current_status(connector.id, "started")
            state.count_call("about")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(state.connectors()) == 201
    assert len(state.status_history()) == 200
    assert state.stats()["about"] == 200
