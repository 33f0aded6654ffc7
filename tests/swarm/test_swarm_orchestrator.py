"""The Swarm orchestrator on a real single-node swarm: lifecycle, options, restarts, logs, retries."""

from __future__ import annotations

import base64
import json

import docker
import docker.errors
import pytest
import trustme

from xtm_composer.config.settings import RegistrySettings
from xtm_composer.config.swarm import SwarmSettings
from xtm_composer.domain import HASH_KEY, LABEL_CONFIG_HASH, LABEL_MANAGER, MountedFile, WorkloadState
from xtm_composer.errors import OrchestratorUnavailable, WorkloadConflict
from xtm_composer.orchestrators.specs import split_env_line
from xtm_composer.orchestrators.swarm import SwarmOrchestrator
from xtm_composer.proxy import PROXY_CA_PATH

from .helpers import TRICKY_VALUES, make_spec, wait_for
from .scenario import Observed, run_connector_life

pytestmark = [pytest.mark.engine, pytest.mark.usefixtures("swarm")]

FAST_RESTARTS = SwarmSettings(restart_delay=100_000_000)  # 0.1 s instead of Swarm's 5 s


def task_container(client: docker.DockerClient, service_id: str):
    (container,) = client.containers.list(filters={"label": f"com.docker.swarm.service.id={service_id}"})
    return container


async def state_of(orchestrator: SwarmOrchestrator, manager_id: str, name: str) -> WorkloadState | None:
    found = [w for w in await orchestrator.list_workloads(manager_id=manager_id) if w.name == name]
    return found[0].state if found else None


async def test_lifecycle_with_exact_env_logs_and_no_restart_counted_for_stop_and_start(
    docker_client, demo_image, manager_id
):
    orchestrator = SwarmOrchestrator(FAST_RESTARTS)
    name = f"{manager_id}-life"
    deployed = await orchestrator.deploy(make_spec(manager_id, demo_image, name=name, extra=TRICKY_VALUES), start=True)
    service = docker_client.api.inspect_service(deployed.engine_id)
    assert service["Spec"]["Labels"][LABEL_MANAGER] == manager_id
    assert service["Spec"]["Mode"] == {"Replicated": {"Replicas": 1}}
    env = dict(split_env_line(line) for line in service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"])
    assert {key: env[key] for key in TRICKY_VALUES} == TRICKY_VALUES and env[HASH_KEY] == "h1"

    assert await wait_for(lambda: _is(orchestrator, manager_id, name, WorkloadState.RUNNING))
    (workload,) = await orchestrator.list_workloads(manager_id=manager_id)
    assert workload.config_hash == "h1" and workload.connector_id == "c1" and workload.engine_id == deployed.engine_id

    lines = await wait_for(lambda: _logs_with(orchestrator, workload, "Fetching new data"))
    assert "Starting connector" in lines[0]
    assert not any(value in "\n".join(lines) for value in ("a=b=c==", "pässwörd"))

    await orchestrator.stop(workload)
    assert await state_of(orchestrator, manager_id, name) is WorkloadState.EXITED
    assert docker_client.api.inspect_service(name)["Spec"]["Mode"]["Replicated"]["Replicas"] == 0
    await orchestrator.start(workload)
    assert await wait_for(lambda: _is(orchestrator, manager_id, name, WorkloadState.RUNNING))
    health = await orchestrator.health(workload)
    assert health.restart_count == 0 and health.started_at is not None and not health.is_in_reboot_loop

    await orchestrator.remove(workload)
    await orchestrator.remove(workload)  # already gone: not an error
    assert await orchestrator.list_workloads(manager_id=manager_id) == []


async def test_crashing_service_is_restarting_and_reported_as_a_reboot_loop(demo_image, manager_id):
    orchestrator = SwarmOrchestrator(FAST_RESTARTS)
    name = f"{manager_id}-crash"
    workload = await orchestrator.deploy(
        make_spec(manager_id, demo_image, name=name, extra={"DEMO_CRASH": "1"}), start=True
    )

    async def looping():
        health = await orchestrator.health(workload)
        return health if health.is_in_reboot_loop else None

    health = await wait_for(looping, timeout=40, interval=0.5)
    assert health.restart_count > 3
    assert await wait_for(lambda: _is(orchestrator, manager_id, name, WorkloadState.RESTARTING), timeout=10)
    lines = await orchestrator.logs(workload, tail=3)  # merged from the crashed tasks, newest last
    assert len(lines) == 3 and any("crashed on start" in line for line in lines)


async def test_image_no_node_can_pull_is_pending_in_a_reboot_loop_with_the_engine_reason(manager_id):
    orchestrator = SwarmOrchestrator(FAST_RESTARTS)
    workload = await orchestrator.deploy(
        make_spec(manager_id, "registry.invalid/no/image:1", name=f"{manager_id}-np"), start=True
    )

    async def looping():
        health = await orchestrator.health(workload)
        return health if health.is_in_reboot_loop else None

    health = await wait_for(looping, timeout=30, interval=0.5)
    assert health.started_at is None and "No such image: registry.invalid/no/image:1" in (health.reason or "")
    (listed,) = await orchestrator.list_workloads(manager_id=manager_id)
    assert listed.state is WorkloadState.PENDING and listed.detail.startswith("rejected: ")


async def test_every_swarm_option_and_the_proxy_ca_reach_the_running_container(
    docker_client, demo_image, manager_id, tmp_path
):
    network = docker_client.networks.create(f"{manager_id}-net", driver="overlay", attachable=True)
    registry_image = "registry.test.invalid:5000/opencti/connector-swarm"
    docker_client.images.get(demo_image).tag(registry_image, "6.8.3")
    options = SwarmSettings(
        network=network.name,
        extra_hosts=["opencti.internal:10.1.2.3", "gateway.internal:host-gateway"],
        dns=["9.9.9.9"],
        dns_search=["corp.example"],
        cap_add=["NET_ADMIN"],
        cap_drop=["MKNOD"],
        sysctls={"net.ipv4.ip_unprivileged_port_start": 0},
        ulimits=[{"name": "nofile", "soft": 4096, "hard": 8192}],
        hostname="connector-host",
        user="65534:65534",
        read_only=True,
        init=True,
        stop_grace_period=3_000_000_000,
        resources={"cpu_limit": 500_000_000, "memory_limit": 256 * 2**20, "memory_reservation": 16 * 2**20},
        placement_constraints=["node.role==manager"],
        placement_preferences=["node.labels.zone"],
        restart_condition="on-failure",
        restart_delay=200_000_000,
        restart_max_attempts=7,
    )
    ca = trustme.CA().cert_pem.bytes().decode()
    seen_headers: list[dict[str, str]] = []

    class RecordingClient(docker.APIClient):
        def _post_json(self, url, data, **kwargs):
            if url.endswith("/services/create"):
                seen_headers.append(dict(kwargs.get("headers") or {}))
            return super()._post_json(url, data, **kwargs)

    orchestrator = SwarmOrchestrator(
        options,
        RegistrySettings(server="registry.test.invalid:5000", username="reg-user", password="reg-pass"),
        client_factory=lambda: RecordingClient(version="auto", **docker.utils.kwargs_from_env()),
    )
    spec = make_spec(
        manager_id, "opencti/connector-swarm:6.8.3", name=f"{manager_id}-opts", files=(MountedFile(PROXY_CA_PATH, ca),)
    )
    try:
        workload = await orchestrator.deploy(spec, start=True)
        auth = json.loads(base64.urlsafe_b64decode(seen_headers[0]["X-Registry-Auth"]))
        assert auth == {"username": "reg-user", "password": "reg-pass", "serveraddress": "registry.test.invalid:5000"}
        template = docker_client.api.inspect_service(workload.engine_id)["Spec"]["TaskTemplate"]
        assert template["ContainerSpec"]["Image"] == f"{registry_image}:6.8.3"
        assert template["Resources"] == {
            "Limits": {"NanoCPUs": 500_000_000, "MemoryBytes": 256 * 2**20},
            "Reservations": {"MemoryBytes": 16 * 2**20},
        }
        assert template["Placement"]["Preferences"] == [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}]
        assert template["RestartPolicy"] == {"Condition": "on-failure", "Delay": 200_000_000, "MaxAttempts": 7}
        assert template["ContainerSpec"]["StopGracePeriod"] == 3_000_000_000

        assert await wait_for(lambda: _is(orchestrator, manager_id, spec.name, WorkloadState.RUNNING))
        container = task_container(docker_client, workload.engine_id)
        host = container.attrs["HostConfig"]
        assert sorted(host["ExtraHosts"]) == ["gateway.internal:host-gateway", "opencti.internal:10.1.2.3"]
        assert host["Dns"] == ["9.9.9.9"] and host["DnsSearch"] == ["corp.example"]
        assert host["CapAdd"] == ["NET_ADMIN"] and host["CapDrop"] == ["MKNOD"]
        assert host["Sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
        assert host["Ulimits"] == [{"Name": "nofile", "Hard": 8192, "Soft": 4096}]
        assert host["ReadonlyRootfs"] is True and host["Init"] is True
        assert host["NanoCpus"] == 500_000_000 and host["Memory"] == 256 * 2**20
        assert (
            container.attrs["Config"]["Hostname"] == "connector-host"
            and container.attrs["Config"]["User"] == "65534:65534"
        )
        assert network.name in container.attrs["NetworkSettings"]["Networks"]
        code, output = container.exec_run(["cat", PROXY_CA_PATH])
        assert code == 0 and output.decode().strip() == ca.strip()
        code, _ = container.exec_run(["sh", "-c", f"echo x >> {PROXY_CA_PATH}"], user="0")
        assert code != 0
        code, output = container.exec_run(["cat", "/etc/hosts"])
        assert "10.1.2.3\topencti.internal" in output.decode()
    finally:
        for service in docker_client.services.list(filters={"label": f"{LABEL_MANAGER}={manager_id}"}):
            service.remove()
        await wait_for(lambda: _network_removable(network), timeout=20)


async def test_update_out_of_sequence_is_retried_on_a_fresh_read(docker_client, demo_image, manager_id):
    other = docker.APIClient(version="auto", **docker.utils.kwargs_from_env())
    reads: list[int] = []

    class RacingClient(docker.APIClient):
        """Another writer updates the service between our read and our write, once."""

        def inspect_service(self, service, insert_defaults=None):
            info = super().inspect_service(service, insert_defaults)
            reads.append(info["Version"]["Index"])
            if len(reads) == 1:
                spec = info["Spec"]
                spec["Labels"] = {**spec["Labels"], "touched-by": "someone-else"}
                other.update_service(
                    info["ID"],
                    info["Version"]["Index"],
                    name=spec["Name"],
                    labels=spec["Labels"],
                    mode=spec["Mode"],
                    task_template=spec["TaskTemplate"],
                )
            return info

    orchestrator = SwarmOrchestrator(
        client_factory=lambda: RacingClient(version="auto", **docker.utils.kwargs_from_env())
    )
    workload = await orchestrator.deploy(make_spec(manager_id, demo_image, name=f"{manager_id}-race"), start=False)
    await orchestrator.start(workload)
    spec = docker_client.api.inspect_service(workload.engine_id)["Spec"]
    assert spec["Mode"]["Replicated"]["Replicas"] == 1  # our change made it…
    assert spec["Labels"]["touched-by"] == "someone-else"  # …on top of the other writer's
    assert len(reads) == 2 and reads[1] > reads[0]
    other.close()


async def test_steady_listing_is_one_engine_call_whatever_the_number_of_services(demo_image, manager_id):
    orchestrator = SwarmOrchestrator(FAST_RESTARTS)
    for i in range(5):
        await orchestrator.deploy(
            make_spec(manager_id, demo_image, name=f"{manager_id}-n{i}", cid=f"c{i}"), start=i < 2
        )

    async def settled():
        workloads = await orchestrator.list_workloads(manager_id=manager_id)
        states = sorted(w.state.value for w in workloads)
        return states == ["exited"] * 3 + ["running"] * 2

    assert await wait_for(settled)
    before = orchestrator.api_calls
    workloads = await orchestrator.list_workloads(manager_id=manager_id)
    assert len(workloads) == 5 and orchestrator.api_calls - before == 1


async def test_hash_of_a_service_made_by_the_rust_composer_is_read_from_its_env(docker_client, demo_image, manager_id):
    docker_client.services.create(
        demo_image,
        name=f"{manager_id}-legacy",
        env=[f"{HASH_KEY}=legacy-hash", "X=1"],
        labels={LABEL_MANAGER: manager_id, "opencti-connector-id": "c9"},
        mode=docker.types.ServiceMode("replicated", replicas=0),
    )
    (workload,) = await SwarmOrchestrator().list_workloads(manager_id=manager_id)
    assert (
        workload.config_hash == "legacy-hash" and workload.platform is None and LABEL_CONFIG_HASH not in workload.labels
    )


async def test_name_taken_by_a_foreign_service_is_a_conflict_and_it_is_left_alone(
    docker_client, demo_image, manager_id
):
    name = f"{manager_id}-taken"
    foreign = docker_client.services.create(
        demo_image, name=name, labels={"owner": "someone-else"}, mode=docker.types.ServiceMode("replicated", replicas=0)
    )
    try:
        with pytest.raises(WorkloadConflict):
            await SwarmOrchestrator().deploy(make_spec(manager_id, demo_image, name=name), start=True)
        foreign.reload()
        assert foreign.attrs["Spec"]["Labels"] == {"owner": "someone-else"}
    finally:
        foreign.remove()


async def test_engine_unreachable_is_orchestrator_unavailable():
    broken = SwarmOrchestrator(
        client_factory=lambda: docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    )
    with pytest.raises(OrchestratorUnavailable):
        await broken.list_workloads(manager_id="x")


async def _is(orchestrator, manager_id, name, state):
    return await state_of(orchestrator, manager_id, name) is state


async def _logs_with(orchestrator, workload, text):
    lines = await orchestrator.logs(workload, tail=100)
    return lines if any(text in line for line in lines) else None


async def _network_removable(network) -> bool:
    try:
        network.remove()
        return True
    except docker.errors.NotFound:
        return True
    except docker.errors.APIError:
        return False


async def test_reconcile_loop_deploys_changes_stops_starts_and_removes_an_orphan_service(
    docker_client, demo_image, manager_id
):
    async def observe(connector_id: str) -> Observed | None:
        services = docker_client.api.services(filters={"label": f"opencti-connector-id={connector_id}"}, status=True)
        if not services:
            return None
        (service,) = services
        env = dict(split_env_line(line) for line in service["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"])
        return Observed(ident=service["ID"], running=service["ServiceStatus"]["RunningTasks"] > 0, env=env)

    orchestrator = SwarmOrchestrator(FAST_RESTARTS)
    await run_connector_life(orchestrator, manager_id=manager_id, image=demo_image, observe=observe)
    await orchestrator.close()
