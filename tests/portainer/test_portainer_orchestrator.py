"""The Portainer orchestrator through a Portainer stand-in that forwards to the real engine."""

from __future__ import annotations

import base64
import json
import re
import ssl

import pytest
import trustme

from xtm_composer.config.settings import RegistrySettings
from xtm_composer.domain import HASH_KEY, LABEL_MANAGER, MountedFile, Workload, WorkloadState
from xtm_composer.errors import (
    ImagePullError,
    OrchestratorError,
    OrchestratorForbidden,
    OrchestratorUnavailable,
    WorkloadNotFound,
)
from xtm_composer.orchestrators.portainer import STACK_LABEL, PortainerOrchestrator
from xtm_composer.orchestrators.specs import split_env_line
from xtm_composer.proxy import PROXY_CA_PATH

from ..swarm.helpers import TRICKY_VALUES, make_spec, wait_for
from ..swarm.scenario import Observed, run_connector_life
from .conftest import API_KEY, settings_for

pytestmark = pytest.mark.engine


async def test_lifecycle_with_stack_label_network_exact_env_and_demultiplexed_logs(
    docker_client, demo_image, manager_id, portainer, engine_api_version
):
    network = docker_client.networks.create(f"{manager_id}-stack_default", driver="bridge")
    orchestrator = PortainerOrchestrator(
        settings_for(portainer, engine_api_version, stack="opencti-dev", network_mode=network.name)
    )
    name = f"{manager_id}-life"
    try:
        await orchestrator.deploy(make_spec(manager_id, demo_image, name=name, extra=TRICKY_VALUES), start=True)
        container = docker_client.containers.get(name)
        assert container.labels[STACK_LABEL] == "opencti-dev" and container.labels[LABEL_MANAGER] == manager_id
        assert container.attrs["HostConfig"]["NetworkMode"] == network.name
        assert container.attrs["HostConfig"]["RestartPolicy"]["Name"] == "on-failure"
        env = dict(split_env_line(line) for line in container.attrs["Config"]["Env"])
        assert {key: env[key] for key in TRICKY_VALUES} == TRICKY_VALUES and env[HASH_KEY] == "h1"

        (workload,) = await orchestrator.list_workloads(manager_id=manager_id)
        assert workload.state is WorkloadState.RUNNING and workload.config_hash == "h1"

        lines = await wait_for(lambda: _logs_with(orchestrator, workload, "Fetching new data"))
        # The proxy cuts every answer into 7-byte chunks: each line must still come out whole.
        assert [json.loads(line)["level"] for line in lines] == ["info"] * len(lines)
        assert "Starting connector" in lines[0]

        health = await orchestrator.health(workload)
        assert health.restart_count == 0 and health.started_at is not None and not health.is_in_reboot_loop

        await orchestrator.stop(workload)
        await orchestrator.stop(workload)  # already stopped (304): not an error
        (stopped,) = await orchestrator.list_workloads(manager_id=manager_id)
        assert stopped.state is WorkloadState.EXITED
        await orchestrator.start(stopped)
        (again,) = await orchestrator.list_workloads(manager_id=manager_id)
        assert again.state is WorkloadState.RUNNING
        await orchestrator.remove(again)
        await orchestrator.remove(again)  # already gone: not an error
        assert await orchestrator.list_workloads(manager_id=manager_id) == []
        assert {headers.get("x-api-key") for _, _, headers in portainer.requests} == {None}  # key not forwarded
    finally:
        await orchestrator.close()
        for leftover in docker_client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"}):
            leftover.remove(force=True)
        network.remove()


async def test_crashing_container_is_seen_as_a_reboot_loop(demo_image, manager_id, portainer, engine_api_version):
    orchestrator = PortainerOrchestrator(settings_for(portainer, engine_api_version))
    spec = make_spec(manager_id, demo_image, name=f"{manager_id}-crash", extra={"DEMO_CRASH": "1"})
    workload = await orchestrator.deploy(spec, start=True)

    async def looping():
        health = await orchestrator.health(workload)
        return health if health.is_in_reboot_loop else None

    health = await wait_for(looping, timeout=40, interval=0.5)
    assert health.restart_count > 3
    assert any("crashed on start" in line for line in await orchestrator.logs(workload, tail=5))
    await orchestrator.close()


async def test_proxy_ca_bundle_is_mounted_read_only(
    docker_client, demo_image, manager_id, portainer, engine_api_version, tmp_path
):
    ca = trustme.CA().cert_pem.bytes().decode()
    orchestrator = PortainerOrchestrator(settings_for(portainer, engine_api_version), files_directory=tmp_path)
    spec = make_spec(manager_id, demo_image, name=f"{manager_id}-ca", files=(MountedFile(PROXY_CA_PATH, ca),))
    await orchestrator.deploy(spec, start=True)
    container = docker_client.containers.get(spec.name)
    code, output = container.exec_run(["cat", PROXY_CA_PATH])
    assert code == 0 and output.decode().strip() == ca.strip()
    code, _ = container.exec_run(["sh", "-c", f"echo x >> {PROXY_CA_PATH}"])
    assert code != 0
    await orchestrator.close()


async def test_reconcile_loop_deploys_changes_stops_starts_and_removes_an_orphan_container(
    docker_client, demo_image, manager_id, portainer, engine_api_version
):
    async def observe(connector_id: str) -> Observed | None:
        found = docker_client.containers.list(all=True, filters={"label": f"opencti-connector-id={connector_id}"})
        if not found:
            return None
        (container,) = found
        env = dict(split_env_line(line) for line in container.attrs["Config"]["Env"])
        return Observed(ident=container.id, running=container.status == "running", env=env)

    orchestrator = PortainerOrchestrator(settings_for(portainer, engine_api_version))
    await run_connector_life(orchestrator, manager_id=manager_id, image=demo_image, observe=observe)
    await orchestrator.close()


async def test_missing_image_is_pulled_with_registry_credentials_and_its_failure_is_an_image_pull_error(
    manager_id, portainer, engine_api_version
):
    registry = RegistrySettings(server="registry.test.invalid", username="reg-user", password="reg-pass")
    orchestrator = PortainerOrchestrator(settings_for(portainer, engine_api_version), registry)
    with pytest.raises(ImagePullError, match=re.escape("registry.test.invalid/nothing/here:1")):
        await orchestrator.deploy(make_spec(manager_id, "nothing/here:1", name=f"{manager_id}-nopull"), start=True)
    (pull,) = [headers for method, path, headers in portainer.requests if path.endswith("/images/create")]
    auth = json.loads(base64.urlsafe_b64decode(pull["x-registry-auth"]))
    assert auth["username"] == "reg-user" and auth["serveraddress"] == "registry.test.invalid"
    await orchestrator.close()


async def test_wrong_api_key_is_a_clear_authentication_error_without_the_key(portainer, engine_api_version):
    settings = settings_for(portainer, engine_api_version).model_copy(update={"api_key": "ptr_wrong-secret-key"})
    orchestrator = PortainerOrchestrator(settings)
    with pytest.raises(OrchestratorForbidden, match="rejected the API key") as caught:
        await orchestrator.list_workloads(manager_id="m")
    assert "ptr_wrong-secret-key" not in str(caught.value) and API_KEY not in str(caught.value)
    await orchestrator.close()


async def test_unknown_environment_is_an_error_that_removal_does_not_swallow(portainer, engine_api_version):
    settings = settings_for(portainer, engine_api_version).model_copy(update={"env_id": 99})
    orchestrator = PortainerOrchestrator(settings)
    with pytest.raises(OrchestratorError, match="env_id") as caught:
        await orchestrator.remove(Workload(name="whatever", state=WorkloadState.EXITED, engine_id="0123456789ab"))
    assert not isinstance(caught.value, WorkloadNotFound)
    await orchestrator.close()


async def test_self_signed_certificate_is_refused_unless_verification_is_disabled(
    tls_portainer, tls_ca, engine_api_version
):
    settings = settings_for(tls_portainer, engine_api_version)
    strict = PortainerOrchestrator(settings)
    with pytest.raises(OrchestratorUnavailable, match="certificate is not trusted"):
        await strict.list_workloads(manager_id="m")
    await strict.close()

    unsecured = PortainerOrchestrator(settings, verify=False)  # unsecured_certificate: true
    assert await unsecured.list_workloads(manager_id="nobody-at-all") == []
    await unsecured.close()

    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    trusting = PortainerOrchestrator(settings, verify=context)  # its CA given: verified and accepted
    assert await trusting.list_workloads(manager_id="nobody-at-all") == []
    await trusting.close()


async def _logs_with(orchestrator, workload, text):
    lines = await orchestrator.logs(workload, tail=100)
    return lines if any(text in line for line in lines) else None
