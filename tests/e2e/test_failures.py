"""Failures never remove anything: platform faults of every kind, and an engine that goes away
and comes back while the reconcile loop keeps running."""

from __future__ import annotations

import asyncio
import os

import pytest

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


def make_runtime(url: str, manager_id: str, *, orchestrator=None, request_timeout=2.0):
    opencti = PlatformSettings(
        enable=True,
        url=url,
        token=TOKEN,
        request_timeout=request_timeout,
        connect_timeout=1,
        logs_schedule=1,
        daemon=DaemonSettings(selector="docker"),
    )
    settings = Settings(manager=ManagerSettings(id=manager_id, execute_schedule=0.5), opencti=opencti)
    return build_runtime(
        PlatformKind.OPENCTI,
        settings=settings,
        platform=OpenCTIClient(build_async_client(opencti)),
        orchestrator=orchestrator or DockerOrchestrator(),
        private_key=load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem"),
    )


def our_containers(docker_client, manager_id):
    return {c.id for c in docker_client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"})}


@pytest.mark.parametrize(
    "fault", ["outage-502-html", "graphql-error", "null-list", "slow", "missing-id", "connection-refused"]
)
async def test_platform_faults_remove_nothing(docker_client, demo_image, manager_id, emulator, fault):
    runtime = make_runtime(emulator.server.url, manager_id)
    await runtime.platform.register(manager_id=manager_id, name="t", public_key=runtime.public_key)
    runtime.registered.set()
    for i in range(3):
        emulator.state.add_connector(f"Fault {i} {manager_id}", demo_image, start=i == 0)
    await runtime.reconcile_once()
    before = our_containers(docker_client, manager_id)
    assert len(before) == 3

    # Every connector disappears from what a broken platform would answer; nothing may follow.
    if fault == "outage-502-html":
        emulator.admin.set_platform(outage=True)
    elif fault == "connection-refused":
        emulator.server.stop()
    else:
        emulator.admin.set_platform(fault=fault)
    if fault == "missing-id":
        for connector in emulator.state.connectors()[1:]:
            emulator.state.delete_connector(connector.id)  # would be orphans, but one entry has no id
    stop = asyncio.Event()
    loop = asyncio.create_task(runtime.reconcile_loop(stop))
    await asyncio.sleep(5 if fault == "slow" else 2.5)
    stop.set()
    await asyncio.wait_for(loop, timeout=10)
    assert our_containers(docker_client, manager_id) == before
    if fault == "connection-refused":
        emulator.server.start()
    await runtime.close()


async def test_engine_socket_gone_then_back_the_loop_keeps_running(
    docker_client, demo_image, manager_id, emulator, tmp_path
):
    real = os.environ["DOCKER_HOST"].removeprefix("unix://")
    link = tmp_path / "docker.sock"
    link.symlink_to(real)
    import docker

    orchestrator = DockerOrchestrator(
        client_factory=lambda: docker.APIClient(base_url=f"unix://{link}", version="auto", timeout=5)
    )
    runtime = make_runtime(emulator.server.url, manager_id, orchestrator=orchestrator)
    await runtime.platform.register(manager_id=manager_id, name="t", public_key=runtime.public_key)
    runtime.registered.set()
    stop = asyncio.Event()
    loop = asyncio.create_task(runtime.reconcile_loop(stop))

    link.unlink()  # the engine socket disappears
    first = emulator.state.add_connector(f"Gone Engine {manager_id}", demo_image, start=True)
    await asyncio.sleep(2)
    assert not loop.done() and our_containers(docker_client, manager_id) == set()

    link.symlink_to(real)  # it comes back
    for _ in range(40):
        if our_containers(docker_client, manager_id):
            break
        await asyncio.sleep(0.25)
    (container_id,) = our_containers(docker_client, manager_id)
    assert docker_client.containers.get(container_id).labels["opencti-connector-id"] == first.id
    stop.set()
    await asyncio.wait_for(loop, timeout=10)
    await runtime.close()


async def test_an_image_change_that_cannot_be_pulled_keeps_the_running_workload(
    docker_client, demo_image, manager_id, emulator
):
    runtime = make_runtime(emulator.server.url, manager_id)
    await runtime.platform.register(manager_id=manager_id, name="t", public_key=runtime.public_key)
    connector = emulator.state.add_connector(f"Keep Me {manager_id}", demo_image, start=True)
    await runtime.reconcile_once()
    (before,) = our_containers(docker_client, manager_id)
    emulator.state.edit_connector(connector.id, image="registry.invalid/none/such:2")
    result = await runtime.reconcile_once()
    assert [o.action.kind for o in result.report.failures] == ["recreate"]
    assert "pull" in result.report.failures[0].error
    assert our_containers(docker_client, manager_id) == {before}
    assert docker_client.containers.get(before).status == "running"
    # The admin sees why on the platform, once, in the connector's logs.
    (note,) = emulator.state.connector(connector.id).logs
    assert note.startswith("[xtm-composer] recreate") and "keeps its previous configuration" in note
    await runtime.reconcile_once()
    assert emulator.state.stats().get("updateConnectorLogs", 0) >= 1
    await runtime.close()


async def test_a_reinstalled_platform_removes_nothing_until_the_hold_is_over(
    docker_client, demo_image, manager_id, emulator
):
    from xtm_composer.emulator.state import EmulatorState

    runtime = make_runtime(emulator.server.url, manager_id)
    await runtime.platform.register(manager_id=manager_id, name="t", public_key=runtime.public_key)
    runtime.registered.set()
    for i in range(3):
        emulator.state.add_connector(f"Survivor {i} {manager_id}", demo_image, start=True)
    await runtime.reconcile_once()
    before = our_containers(docker_client, manager_id)
    emulator.server.stop()
    stop = asyncio.Event()
    loop = asyncio.create_task(runtime.reconcile_loop(stop))
    await asyncio.sleep(1.5)  # passes fail while it is down
    emulator.server.state = EmulatorState(token=TOKEN)  # same URL, all state lost
    emulator.server.start()
    await asyncio.sleep(3)
    stop.set()
    await asyncio.wait_for(loop, timeout=10)
    assert emulator.server.state.manager() is not None  # registered again before acting
    assert our_containers(docker_client, manager_id) == before
    await runtime.close()
