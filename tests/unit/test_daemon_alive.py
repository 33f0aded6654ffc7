"""The alive loop against the emulator over HTTP: register, ping, register again when needed, back off."""

from __future__ import annotations

import asyncio

import pytest

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.crypto import load_private_key_file
from xtm_composer.daemon import PlatformRuntime
from xtm_composer.domain import PlatformKind
from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient

from ..paths import SHARED_VECTORS

TOKEN = "alive-token"


class NoOrchestrator:
    async def close(self) -> None:
        return None


@pytest.fixture(scope="module")
def key():
    return load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem")


@pytest.fixture
def emulator():
    state = EmulatorState(token=TOKEN)
    with EmulatorServer(state) as server:
        yield state, server


def runtime_for(url: str, key, *, ping: float = 0.2) -> PlatformRuntime:
    settings = PlatformSettings(enable=True, url=url, token=TOKEN, request_timeout=2, connect_timeout=1)
    return PlatformRuntime(
        kind=PlatformKind.OPENCTI,
        platform=OpenCTIClient(build_async_client(settings)),
        orchestrator=NoOrchestrator(),  # type: ignore[arg-type]
        settings=settings,
        manager_id="alive-manager",
        manager_name="alive",
        private_key=key,
        execute_schedule=1,
        ping_alive_schedule=ping,
    )


async def eventually(predicate, timeout=10.0):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("condition not met")


async def test_registers_with_the_pkcs1_public_key_then_pings(emulator, key):
    state, server = emulator
    runtime = runtime_for(server.url, key)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.alive_loop(stop))
    await eventually(lambda: state.stats().get("updateConnectorManagerStatus", 0) >= 2)
    stop.set()
    await task
    manager = state.manager()
    assert manager is not None and manager.id == "alive-manager"
    assert manager.public_key.startswith("-----BEGIN RSA PUBLIC KEY-----")
    assert state.stats()["registerConnectorsManager"] == 1


async def test_registers_again_when_the_platform_version_changes(emulator, key):
    state, server = emulator
    runtime = runtime_for(server.url, key)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.alive_loop(stop))
    await eventually(runtime.registered.is_set)
    state.version = "6.9.0"
    await eventually(lambda: state.stats().get("registerConnectorsManager", 0) == 2)
    assert runtime.platform_version == "6.9.0"
    stop.set()
    await task


async def test_registers_again_when_the_platform_forgot_the_manager(emulator, key):
    state, server = emulator
    runtime = runtime_for(server.url, key)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.alive_loop(stop))
    await eventually(runtime.registered.is_set)
    state.forget_manager()
    await eventually(lambda: state.manager() is not None and state.stats().get("registerConnectorsManager") == 2)
    stop.set()
    await task


async def test_unreachable_platform_backs_off_instead_of_spinning(key):
    runtime = runtime_for("http://127.0.0.1:9", key)  # discard port: connection refused at once
    attempts = 0
    original = runtime.platform.version

    async def counting_version() -> str:
        nonlocal attempts
        attempts += 1
        return await original()

    runtime.platform.version = counting_version  # type: ignore[method-assign]
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.alive_loop(stop))
    await asyncio.sleep(3.5)
    stop.set()
    await task
    assert 2 <= attempts <= 3  # 1 s, 2 s, … between attempts
    assert not runtime.registered.is_set()


async def test_stop_event_ends_the_loop_promptly(emulator, key):
    _, server = emulator
    runtime = runtime_for(server.url, key, ping=3600)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.alive_loop(stop))
    await eventually(runtime.registered.is_set)
    stop.set()
    await asyncio.wait_for(task, timeout=1)
