"""OpenCTI and OpenAEV together on one engine under one manager id: side by side, scoped removals,
and one platform's outage never slows or stops the other."""

from __future__ import annotations

import time

import docker
import pytest

from xtm_composer.domain import LABEL_CONNECTOR_ID, LABEL_MANAGER, LABEL_PLATFORM
from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState
from xtm_composer.orchestrators.specs import split_env_line

from .conftest import EXECUTE_SCHEDULE, TOKEN, wait_until

pytestmark = pytest.mark.engine


@pytest.fixture
def openaev():
    state = EmulatorState(token=TOKEN, kind="openaev")
    server = EmulatorServer(state).start()
    yield state, server
    server.stop()


def by_platform(client: docker.DockerClient, manager_id: str) -> dict[str, list]:
    found: dict[str, list] = {}
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"}):
        found.setdefault(container.labels.get(LABEL_PLATFORM), []).append(container)
    return found


def test_both_platforms_side_by_side_with_scoped_removal_and_isolated_outage(
    docker_client, demo_image, manager_id, emulator, openaev, start_composer
):
    aev_state, aev_server = openaev
    composer = start_composer(
        emulator.server.url,
        OPENAEV__ENABLE="true",
        OPENAEV__URL=aev_server.url,
        OPENAEV__TOKEN=TOKEN,
        OPENAEV__DAEMON__SELECTOR="docker",
        OPENAEV__LOGS_SCHEDULE="1",
    )
    wait_until(lambda: emulator.state.manager() and aev_state.manager(), timeout=20, what="both registrations")
    assert aev_state.manager().public_key.startswith("-----BEGIN PUBLIC KEY-----")
    assert emulator.state.manager().public_key.startswith("-----BEGIN RSA PUBLIC KEY-----")

    octi = emulator.admin.add_connector(f"Feed {manager_id}", demo_image, start=True)
    collector = aev_state.add_connector(
        f"Collector {manager_id}", demo_image, secrets={"AEV_KEY": "k=1\nx"}, start=True
    )
    wait_until(
        lambda: (
            len(by_platform(docker_client, manager_id).get("openaev", [])) == 1
            and len(by_platform(docker_client, manager_id).get("opencti", [])) == 1
        ),
        timeout=4 * EXECUTE_SCHEDULE,
        what="a collector and a connector side by side",
    )
    (aev_container,) = by_platform(docker_client, manager_id)["openaev"]
    env = dict(split_env_line(line) for line in aev_container.attrs["Config"]["Env"])
    assert env["AEV_KEY"] == "k=1\nx" and env["OPENAEV_URL"] == aev_server.url
    assert aev_container.labels[LABEL_CONNECTOR_ID] == collector.id
    wait_until(
        lambda: aev_state.connector(collector.id).current_status == "started",
        timeout=10,
        what="OpenAEV status reported",
    )

    # Deleting the OpenAEV instance removes only its workload.
    aev_state.delete_connector(collector.id)
    wait_until(lambda: "openaev" not in by_platform(docker_client, manager_id), timeout=10, what="collector removed")
    (octi_container,) = by_platform(docker_client, manager_id)["opencti"]
    assert octi_container.labels[LABEL_CONNECTOR_ID] == octi["id"]

    # OpenCTI goes down: nothing of it is removed and OpenAEV carries on at its own pace.
    emulator.server.stop()
    started = time.monotonic()
    second = aev_state.add_connector(f"Second {manager_id}", demo_image, start=True)
    wait_until(
        lambda: aev_state.connector(second.id).current_status == "started",
        timeout=3 * EXECUTE_SCHEDULE + 2,
        what="OpenAEV reconciled during the OpenCTI outage",
    )
    assert time.monotonic() - started < 3 * EXECUTE_SCHEDULE + 2
    time.sleep(EXECUTE_SCHEDULE)
    (still_there,) = by_platform(docker_client, manager_id)["opencti"]
    assert still_there.id == octi_container.id
    emulator.server.start()
    assert composer.stop() == 0
    assert "k=1" not in composer.log_text()
