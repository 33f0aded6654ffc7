"""The Docker orchestrator on the real engine: lifecycle, exact env, bulk listing, health, logs."""

from __future__ import annotations

import asyncio
import time

import docker
import pytest

from xtm_composer.domain import HASH_KEY, LABEL_MANAGER, PlatformKind, WorkloadSpec, WorkloadState
from xtm_composer.errors import ImagePullError, WorkloadConflict
from xtm_composer.orchestrators.docker_engine import DockerOrchestrator
from xtm_composer.orchestrators.specs import build_env, ownership_labels, split_env_line

pytestmark = pytest.mark.engine

TRICKY_VALUES = {
    "WITH_EQUALS": "a=b=c==",
    "MULTILINE": "line1\nline2\r\nline3",
    "UNICODE": "pässwörd ✓ 威胁情报",
    "QUOTES": "\"double\" 'single' $HOME `cmd`",
    "EMPTY": "",
}


def spec(manager_id: str, image: str, *, name: str, cid: str = "c1", hash_: str = "h1", extra=None) -> WorkloadSpec:
    env = {"CONNECTOR_NAME": name, "DEMO_INTERVAL": "1", **(extra or {})}
    return WorkloadSpec(
        name=name,
        image=image,
        env=build_env(env.items(), config_hash=hash_),
        labels=ownership_labels(manager_id=manager_id, connector_id=cid, platform=PlatformKind.OPENCTI),
        config_hash=hash_,
    )


async def wait_for(predicate, timeout=30.0, interval=0.3):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await predicate()
        if result:
            return result
        await asyncio.sleep(interval)
    raise AssertionError("condition not met in time")


async def test_deploy_start_stop_remove_with_exact_env(docker_client, demo_image, manager_id):
    orchestrator = DockerOrchestrator()
    name = f"{manager_id}-tricky"
    await orchestrator.deploy(spec(manager_id, demo_image, name=name, extra=TRICKY_VALUES), start=True)
    container = docker_client.containers.get(name)
    env = dict(split_env_line(line) for line in container.attrs["Config"]["Env"])
    for key, value in TRICKY_VALUES.items():
        assert env[key] == value
    assert env[HASH_KEY] == "h1"
    assert container.labels[LABEL_MANAGER] == manager_id
    assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"

    (workload,) = await orchestrator.list_workloads(manager_id=manager_id)
    assert workload.state is WorkloadState.RUNNING and workload.config_hash == "h1" and workload.connector_id == "c1"

    lines = await wait_for(lambda: orchestrator.logs(workload, tail=100))
    assert "Starting connector" in lines[0]
    assert not any(v in "\n".join(lines) for v in ("a=b=c==", "pässwörd"))

    health = await orchestrator.health(workload)
    assert health.restart_count == 0 and health.started_at is not None and not health.is_in_reboot_loop

    await orchestrator.stop(workload)
    (stopped,) = await orchestrator.list_workloads(manager_id=manager_id)
    assert stopped.state is WorkloadState.EXITED
    await orchestrator.remove(stopped)
    await orchestrator.remove(stopped)  # already gone: not an error
    assert await orchestrator.list_workloads(manager_id=manager_id) == []


async def test_steady_listing_is_one_engine_call_whatever_the_number_of_containers(demo_image, manager_id):
    orchestrator = DockerOrchestrator()
    for i in range(5):
        await orchestrator.deploy(spec(manager_id, demo_image, name=f"{manager_id}-n{i}", cid=f"c{i}"), start=False)
    await orchestrator.list_workloads(manager_id=manager_id)
    before = orchestrator.api_calls
    workloads = await orchestrator.list_workloads(manager_id=manager_id)
    assert len(workloads) == 5 and orchestrator.api_calls - before == 1


async def test_hash_of_a_container_made_by_another_composer_is_read_from_its_env(docker_client, demo_image, manager_id):
    name = f"{manager_id}-legacy"
    docker_client.containers.create(
        demo_image,
        name=name,
        environment=[f"{HASH_KEY}=legacy-hash", "X=1"],
        labels={LABEL_MANAGER: manager_id, "opencti-connector-id": "c9"},
    )
    orchestrator = DockerOrchestrator()
    (workload,) = await orchestrator.list_workloads(manager_id=manager_id)
    assert workload.config_hash == "legacy-hash" and workload.platform is None
    calls = orchestrator.api_calls
    await orchestrator.list_workloads(manager_id=manager_id)
    assert orchestrator.api_calls - calls == 1  # the env is read once per container, then cached


async def test_crashing_container_is_restarted_by_the_engine_and_seen_as_a_reboot_loop(demo_image, manager_id):
    orchestrator = DockerOrchestrator()
    workload = await orchestrator.deploy(
        spec(manager_id, demo_image, name=f"{manager_id}-crash", extra={"DEMO_CRASH": "1"}), start=True
    )

    async def looping():
        health = await orchestrator.health(workload)
        return health if health.is_in_reboot_loop else None

    health = await wait_for(looping, timeout=60, interval=1)
    assert health.restart_count > 3


async def test_name_taken_by_a_foreign_container_is_a_conflict_and_it_is_left_alone(
    docker_client, demo_image, manager_id
):
    name = f"{manager_id}-taken"
    foreign = docker_client.containers.create(demo_image, name=name, labels={"owner": "someone-else"})
    try:
        with pytest.raises(WorkloadConflict):
            await DockerOrchestrator().deploy(spec(manager_id, demo_image, name=name), start=True)
        foreign.reload()
        assert foreign.labels["owner"] == "someone-else" and LABEL_MANAGER not in foreign.labels
        assert foreign.status == "created"
    finally:
        foreign.remove(force=True)


async def test_missing_image_that_cannot_be_pulled_is_an_image_pull_error(manager_id):
    with pytest.raises(ImagePullError):
        await DockerOrchestrator().deploy(
            spec(manager_id, "registry.invalid/nothing/here:1", name=f"{manager_id}-nopull"), start=True
        )


async def test_engine_unreachable_is_orchestrator_unavailable_and_recovers():
    from xtm_composer.errors import OrchestratorUnavailable

    broken = DockerOrchestrator(
        client_factory=lambda: docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    )
    with pytest.raises(OrchestratorUnavailable):
        await broken.list_workloads(manager_id="x")


async def test_a_container_paused_behind_our_back_is_resumed_or_stopped(docker_client, demo_image, manager_id):
    orchestrator = DockerOrchestrator()
    await orchestrator.deploy(spec(manager_id, demo_image, name=f"{manager_id}-paused"), start=True)
    docker_client.containers.get(f"{manager_id}-paused").pause()
    (paused,) = await orchestrator.list_workloads(manager_id=manager_id)
    assert paused.state is WorkloadState.PAUSED
    await orchestrator.start(paused)
    assert docker_client.containers.get(f"{manager_id}-paused").status == "running"
    docker_client.containers.get(f"{manager_id}-paused").pause()
    (paused,) = await orchestrator.list_workloads(manager_id=manager_id)
    await orchestrator.stop(paused)
    assert docker_client.containers.get(f"{manager_id}-paused").status == "exited"
