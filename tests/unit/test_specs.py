"""Workload names and environment: valid, deterministic, exact, whatever the input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xtm_composer.domain import HASH_KEY, Connector, RequestedStatus
from xtm_composer.errors import InvalidWorkloadSpec
from xtm_composer.orchestrators.specs import (
    assign_workload_names,
    build_env,
    is_dns_label,
    preferred_workload_name,
    split_env_line,
)


def connector(name: str, cid: str = "c1") -> Connector:
    return Connector(
        id=cid, name=name, image="i", contract_hash="h", requested_status=RequestedStatus.STARTING, current_status=None
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Abuse.ch URLhaus", "abuse-ch-urlhaus"),
        ("MITRE ATT&CK", "mitre-att-ck"),
        ("AlienVault OTX", "alienvault-otx"),
        ("cisa-kev-2", "cisa-kev-2"),
    ],
)
def test_names_match_the_rust_composer_where_its_rule_gives_a_valid_label(name, expected):
    assert preferred_workload_name(connector(name)) == expected


@pytest.mark.parametrize("name", ["威胁情报", "Ünïcödé Feed", "-leading", "trailing!", "x" * 80, "", "   ", "a--b"])
def test_names_the_rust_rule_gets_wrong_become_valid_labels(name):
    result = preferred_workload_name(connector(name))
    assert is_dns_label(result)


@given(name=st.text(max_size=120), cid=st.uuids().map(str))
def test_any_connector_name_gives_a_valid_deterministic_dns_label(name, cid):
    first = preferred_workload_name(connector(name, cid))
    assert is_dns_label(first) and first == preferred_workload_name(connector(name, cid))


@given(names=st.lists(st.text(max_size=40), min_size=1, max_size=8))
def test_distinct_connector_ids_always_get_distinct_names(names):
    connectors = [connector(n, cid=f"id-{i}") for i, n in enumerate(names)]
    assigned = assign_workload_names(connectors, current_owner=lambda _name: None)
    assert len(set(assigned.values())) == len(connectors)
    assert all(is_dns_label(n) for n in assigned.values())


@given(value=st.text().filter(lambda v: "\x00" not in v))
def test_env_values_are_kept_byte_for_byte_and_read_back_on_the_first_equals(value):
    env = dict(build_env([("KEY", value)], config_hash="h"))
    assert env["KEY"] == value
    assert split_env_line(f"KEY={value}") == ("KEY", value)


def test_hash_is_last_and_cannot_be_overridden_by_configuration():
    env = build_env([(HASH_KEY, "spoof"), ("A", "1")], config_hash="real")
    assert env[-1] == (HASH_KEY, "real") and dict(env)[HASH_KEY] == "real"


@pytest.mark.parametrize("key", ["1ABC", "A B", "A=B", "", "ÄÖ", "a\nb"])
def test_invalid_env_names_are_rejected_before_any_engine_call(key):
    with pytest.raises(InvalidWorkloadSpec, match="environment variable name"):
        build_env([(key, "v")], config_hash="h")
