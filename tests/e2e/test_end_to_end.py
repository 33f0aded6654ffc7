"""The whole job on the real engine: emulator over HTTP, `xtm-composer run` as a subprocess."""

from __future__ import annotations

import time

import docker
import docker.errors
import pytest

from xtm_composer.crypto import public_key_pkcs1_pem
from xtm_composer.domain import HASH_KEY, LABEL_CONNECTOR_ID, LABEL_MANAGER
from xtm_composer.orchestrators.specs import split_env_line

from .conftest import EXECUTE_SCHEDULE, wait_until

pytestmark = pytest.mark.engine

SECRET = 's3cr=t\nwith ✓ "quotes" and = signs'
OTHER_SECRET = "second-secret-Ω-value"


def container_env(container) -> dict[str, str]:
    return dict(split_env_line(line) for line in container.attrs["Config"]["Env"])


def ours(client: docker.DockerClient, manager_id: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"})


def get_container(client: docker.DockerClient, manager_id: str, connector_id: str):
    for container in ours(client, manager_id):
        if container.labels.get(LABEL_CONNECTOR_ID) == connector_id:
            try:
                container.reload()
            except docker.errors.NotFound:  # removed between the list and the reload (recreation)
                continue
            return container
    return None


def test_connector_lifecycle_end_to_end(docker_client, demo_image, manager_id, emulator, start_composer):
    foreign = docker_client.containers.create(demo_image, name=f"{manager_id}-foreign", labels={"owner": "me"})
    try:
        composer = start_composer(emulator.server.url)
        wait_until(emulator.admin.manager, timeout=20, what="registration")
        added_at = time.monotonic()
        created = emulator.admin.add_connector(
            "Abuse.ch URLhaus",
            demo_image,
            config={"URLHAUS_INTERVAL": "a=b=c"},
            secrets={"URLHAUS_API_KEY": SECRET},
            start=True,
        )
        cid = created["id"]

        def running():
            c = get_container(docker_client, manager_id, cid)
            return c if c is not None and c.status == "running" else None

        container = wait_until(running, timeout=2 * EXECUTE_SCHEDULE + 3, what="a running container")
        assert time.monotonic() - added_at <= 2 * EXECUTE_SCHEDULE + 3
        env = container_env(container)
        connector = emulator.admin.get(cid)
        assert container.name == "abuse-ch-urlhaus"
        assert env["URLHAUS_API_KEY"] == SECRET and env["URLHAUS_INTERVAL"] == "a=b=c"
        assert env[HASH_KEY] == connector["hash"] and env["CONNECTOR_ID"] == cid

        connector = wait_until(
            lambda: (c := emulator.admin.get(cid))["current_status"] == "started" and c["logs"] and c["health"] and c,
            timeout=15,
            what="started status, logs and health on the platform",
        )
        assert any("Starting connector" in line for line in connector["logs"])
        assert connector["health"]["restart_count"] == 0 and connector["health"]["is_in_reboot_loop"] is False

        emulator.admin.stop(cid)
        wait_until(
            lambda: get_container(docker_client, manager_id, cid).status == "exited",
            timeout=20,
            what="container stopped",
        )
        wait_until(lambda: emulator.admin.get(cid)["current_status"] == "stopped", timeout=10, what="stopped reported")

        emulator.admin.start(cid)
        old_id = wait_until(running, timeout=20, what="restart").id
        edited = emulator.admin.edit(cid, config={"URLHAUS_INTERVAL": "changed"})
        assert edited["hash"] != connector["hash"]

        def recreated():
            c = get_container(docker_client, manager_id, cid)
            return c if c is not None and c.id != old_id and c.status == "running" else None

        container = wait_until(recreated, timeout=20, what="recreation after a config edit")
        env = container_env(container)
        assert env[HASH_KEY] == edited["hash"] and env["URLHAUS_INTERVAL"] == "changed"
        assert env["URLHAUS_API_KEY"] == SECRET

        emulator.admin.delete(cid)
        wait_until(lambda: get_container(docker_client, manager_id, cid) is None, timeout=20, what="removal")

        foreign.reload()
        assert foreign.status == "created" and foreign.labels["owner"] == "me"
        assert composer.stop() == 0
        assert SECRET.split("\n")[0] not in composer.log_text()
        assert '"level": "error"' not in composer.log_text()
    finally:
        foreign.remove(force=True)


def test_undecryptable_secret_blocks_only_its_connector(
    docker_client, demo_image, manager_id, emulator, start_composer, key_file
):
    from xtm_composer.crypto import generate_private_key

    # A value saved while another key was registered stays encrypted under that key (PROTOCOL.md §2).
    other_key = generate_private_key()
    emulator.state.register_manager(manager_id, "previous install", public_key_pkcs1_pem(other_key))
    bad = emulator.admin.add_connector("Bad Secret", demo_image, secrets={"BAD_API_KEY": OTHER_SECRET}, start=True)
    composer = start_composer(emulator.server.url)
    wait_until(
        lambda: (emulator.admin.manager() or {}).get("name") == "e2e composer",
        timeout=20,
        what="registration with our key",
    )
    good = emulator.admin.add_connector("Good Secret", demo_image, secrets={"GOOD_API_KEY": SECRET}, start=True)

    container = wait_until(
        lambda: get_container(docker_client, manager_id, good["id"]), timeout=20, what="the good connector deployed"
    )
    assert container_env(container)["GOOD_API_KEY"] == SECRET
    time.sleep(2 * EXECUTE_SCHEDULE)
    assert get_container(docker_client, manager_id, bad["id"]) is None
    assert composer.stop() == 0
    log = composer.log_text()
    error_lines = [line for line in log.splitlines() if "BAD_API_KEY" in line]
    assert error_lines and all("Bad Secret" in line for line in error_lines)
    assert OTHER_SECRET not in log and SECRET not in log


def test_platform_outage_removes_nothing_and_the_composer_registers_again(
    docker_client, demo_image, manager_id, emulator, start_composer
):
    composer = start_composer(emulator.server.url)
    wait_until(emulator.admin.manager, timeout=20, what="registration")
    cid = emulator.admin.add_connector("Outage Survivor", demo_image, start=True)["id"]
    container = wait_until(
        lambda: (c := get_container(docker_client, manager_id, cid)) is not None and c.status == "running" and c,
        timeout=20,
        what="deployed",
    )

    emulator.admin.set_platform(outage=True)  # 502 with an HTML body, like a proxy in front of a down platform
    time.sleep(2 * EXECUTE_SCHEDULE + 1)
    emulator.admin.set_platform(outage=False)
    emulator.server.stop()  # connection refused
    time.sleep(2 * EXECUTE_SCHEDULE + 1)
    container.reload()
    assert container.status == "running"

    emulator.state.forget_manager()  # the platform comes back without our registration
    registrations_before = emulator.state.stats().get("registerConnectorsManager", 0)
    emulator.server.start()
    wait_until(emulator.admin.manager, timeout=30, what="registration again")
    emulator.admin.stop(cid)
    wait_until(
        lambda: get_container(docker_client, manager_id, cid).status == "exited",
        timeout=20,
        what="the composer carries on",
    )
    assert get_container(docker_client, manager_id, cid).id == container.id
    assert emulator.state.stats().get("registerConnectorsManager", 0) > registrations_before
    assert emulator.state.stats().get("updateConnectorManagerStatus", 0) > 0
    assert composer.stop() == 0
