"""Injected platform faults answer the way broken deployments do, and the composer's client reads
each as an error, never as an empty list."""

from __future__ import annotations

import pytest

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.emulator.errors import EmulatorError
from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState
from xtm_composer.errors import PlatformRejected, PlatformUnavailable
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient


@pytest.fixture(scope="module")
def served():
    state = EmulatorState(token="t")
    state.add_connector("One", "img:1")
    with EmulatorServer(state) as server:
        yield state, server


def client(url):
    return OpenCTIClient(build_async_client(PlatformSettings(enable=True, url=url, token="t")))


@pytest.mark.parametrize(
    ("fault", "error", "code"),
    [
        ("graphql-error", PlatformRejected, "DATABASE_ERROR"),
        ("null-list", PlatformUnavailable, None),
    ],
)
async def test_list_faults_are_errors(served, fault, error, code):
    state, server = served
    state.set_platform(fault=fault)
    try:
        with pytest.raises(error) as info:
            await client(server.url).list_connectors(manager_id="m")
        assert getattr(info.value, "code", None) == code
    finally:
        state.set_platform(fault="none")


async def test_an_entry_without_id_nulls_the_whole_list_as_graphql_does(served):
    # `[ManagedConnector!]` with one null `id!`: GraphQL nulls the list and reports an error.
    state, server = served
    state.set_platform(fault="missing-id")
    try:
        with pytest.raises(PlatformRejected, match="non-nullable"):
            await client(server.url).list_connectors(manager_id="m")
    finally:
        state.set_platform(fault="none")


def test_unknown_fault_is_refused(served):
    state, _ = served
    with pytest.raises(EmulatorError, match="fault must be one of"):
        state.set_platform(fault="meteor")
