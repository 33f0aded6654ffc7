"""Reboot loops seen for real on the engine: a connector that exits at once is reported in a
reboot loop, and with `reboot_loop_stop_after` it is stopped and stays stopped."""

from __future__ import annotations

import asyncio
import time

import pytest
from structlog.testing import capture_logs

from xtm_composer.config.settings import DaemonSettings, ManagerSettings, PlatformSettings, Settings
from xtm_composer.crypto import load_private_key_file
from xtm_composer.daemon import build_runtime
from xtm_composer.domain import LABEL_MANAGER, PlatformKind
from xtm_composer.orchestrators.docker_engine import DockerOrchestrator
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient

from ..paths import SHARED_VECTORS
from .conftest import TOKEN

pytestmark = pytest.mark.engine


def make_runtime(url, manager_id, **manager):
    opencti = PlatformSettings(
        enable=True, url=url, token=TOKEN, logs_schedule=2, daemon=DaemonSettings(selector="docker")
    )
    settings = Settings(
        manager=ManagerSettings(id=manager_id, execute_schedule=1, health_interval=2, **manager), opencti=opencti
    )
    runtime = build_runtime(
        PlatformKind.OPENCTI,
        settings=settings,
        platform=OpenCTIClient(build_async_client(opencti)),
        orchestrator=DockerOrchestrator(),
        private_key=load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem"),
    )
    runtime.registered.set()
    return runtime


async def run_until(runtime, condition, timeout):
    stop = asyncio.Event()
    loop = asyncio.create_task(runtime.reconcile_loop(stop))
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if condition():
                return True
            await asyncio.sleep(0.5)
        return False
    finally:
        stop.set()
        await asyncio.wait_for(loop, timeout=30)


async def test_crashing_connector_is_reported_in_a_reboot_loop_within_two_minutes(demo_image, manager_id, emulator):
    runtime = make_runtime(emulator.server.url, manager_id)
    await runtime.platform.register(manager_id=manager_id, name="t", public_key=runtime.public_key)
    crasher = emulator.state.add_connector(f"Crasher {manager_id}", demo_image, config={"DEMO_CRASH": "1"}, start=True)

    def looping():
        health = emulator.state.connector(crasher.id).health
        return health is not None and health.is_in_reboot_loop

    started = time.monotonic()
    assert await run_until(runtime, looping, timeout=120)
    assert time.monotonic() - started < 120
    assert emulator.state.connector(crasher.id).health.restart_count > 3
    await runtime.close()


async def test_reboot_loop_stop_after_stops_the_connector_and_keeps_it_stopped(
    docker_client, demo_image, manager_id, emulator
):
    runtime = make_runtime(emulator.server.url, manager_id, reboot_loop_stop_after=0.05)  # 3 seconds
    await runtime.platform.register(manager_id=manager_id, name="t", public_key=runtime.public_key)
    crasher = emulator.state.add_connector(f"Stopper {manager_id}", demo_image, config={"DEMO_CRASH": "1"}, start=True)

    def container():
        (c,) = docker_client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"})
        return c

    with capture_logs() as logs:
        stopped = await run_until(
            runtime,
            lambda: (
                emulator.state.connector(crasher.id).current_status == "stopped"
                and any("reboot loop" in str(e.get("reason", "")) for e in logs)
            ),
            timeout=120,
        )
    assert stopped
    assert container().status == "exited"
    # Requested status is still "starting", yet the composer leaves it stopped until an admin acts.
    assert await run_until(runtime, lambda: False, timeout=4) is False
    assert container().status == "exited"
    assert emulator.state.connector(crasher.id).current_status == "stopped"

    # The admin stops it (seen by a pass: the hold is released), then starts it again.
    held_started_at = container().attrs["State"]["StartedAt"]
    emulator.state.stop_connector(crasher.id)
    assert await run_until(runtime, lambda: False, timeout=3) is False
    emulator.state.start_connector(crasher.id)
    assert await run_until(runtime, lambda: container().attrs["State"]["StartedAt"] != held_started_at, timeout=30)
    await runtime.close()
