"""Portainer answers Docker's real engine cannot produce here, through an httpx MockTransport: every
non-2xx answer becomes a typed error with Portainer's words, a pull failing inside its 200 stream,
configuration mistakes; and the exact container payload."""

from __future__ import annotations

import json

import httpx
import pytest

from xtm_composer.config.settings import PortainerSettings
from xtm_composer.domain import MountedFile, Workload, WorkloadState
from xtm_composer.errors import (
    ConfigurationError,
    ImagePullError,
    OrchestratorError,
    OrchestratorForbidden,
    OrchestratorUnavailable,
    WorkloadConflict,
    WorkloadNotFound,
)
from xtm_composer.orchestrators.portainer import (
    PortainerOrchestrator,
    container_create_body,
    portainer_base_url,
)

from ..swarm.helpers import make_spec

SETTINGS = PortainerSettings(api="https://portainer.test:9443/", api_key="k-123", env_id=3, api_version="1.41")
WORKLOAD = Workload(name="conn", state=WorkloadState.RUNNING, engine_id="abc123")


def orchestrator(handler) -> PortainerOrchestrator:
    return PortainerOrchestrator(SETTINGS, transport=httpx.MockTransport(handler))


def test_base_url_is_portainer_docker_proxy_of_the_environment():
    assert portainer_base_url(SETTINGS) == "https://portainer.test:9443/api/endpoints/3/docker/v1.41"


@pytest.mark.parametrize(
    ("update", "key"),
    [
        ({"api": "portainer:9443"}, "api"),
        ({"api_key": None}, "api_key"),
        ({"env_id": None}, "env_id"),
        ({"env_type": "kubernetes"}, "env_type"),
    ],
)
def test_incomplete_settings_are_a_configuration_error_naming_the_key(update, key):
    with pytest.raises(ConfigurationError, match=f"daemon.portainer.{key}"):
        PortainerOrchestrator(SETTINGS.model_copy(update=update))


async def test_every_request_carries_the_api_key_under_the_environment_prefix():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=[])

    await orchestrator(handler).list_workloads(manager_id="m1")
    (request,) = seen
    assert request.headers["X-API-KEY"] == "k-123"
    assert request.url.path == "/api/endpoints/3/docker/v1.41/containers/json"
    assert json.loads(request.url.params["filters"]) == {"label": ["opencti-manager=m1"]}


async def test_pull_failing_inside_its_200_stream_is_an_image_pull_error():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/json"):
            return httpx.Response(404, json={"message": "No such image: reg/img:1"})
        lines = [
            {"status": "Pulling from reg/img", "id": "1"},
            {
                "errorDetail": {"message": "manifest for reg/img:1 not found"},
                "error": "manifest for reg/img:1 not found",
            },
        ]
        body = "".join(json.dumps(line) + "\r\n" for line in lines).encode()
        return httpx.Response(200, stream=httpx.ByteStream(body))

    with pytest.raises(ImagePullError, match="manifest for reg/img:1 not found"):
        await orchestrator(handler).deploy(make_spec("m", "reg/img:1", name="conn"), start=False)


@pytest.mark.parametrize(
    ("status", "body", "error", "words"),
    [
        (401, {"message": "Unauthorized", "details": "Invalid API key"}, OrchestratorForbidden, "rejected the API key"),
        (403, {"message": "Access denied to resource", "details": "x"}, OrchestratorForbidden, "environment 3"),
        (404, {"message": "No such container: abc123"}, WorkloadNotFound, "No such container"),
        (404, {"message": "Unable to find an environment", "details": "Object not found"}, OrchestratorError, "env_id"),
        (409, {"message": "Conflict. The container name is in use"}, WorkloadConflict, "name is in use"),
        (500, {"message": "driver failed"}, OrchestratorUnavailable, "driver failed"),
        (502, "<html><body><h1>502 Bad Gateway</h1></body></html>", OrchestratorUnavailable, "502 Bad Gateway"),
        (400, {"message": "invalid reference format"}, OrchestratorError, "invalid reference format"),
    ],
)
async def test_each_error_answer_becomes_a_typed_error_with_its_message(status, body, error, words):
    def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(body, str):
            return httpx.Response(status, text=body, headers={"content-type": "text/html"})
        return httpx.Response(status, json=body)

    with pytest.raises(error, match=words) as caught:
        await orchestrator(handler).health(WORKLOAD)
    assert "k-123" not in str(caught.value)
    if error is OrchestratorError:
        assert type(caught.value) is OrchestratorError  # not mistaken for a missing workload


async def test_removal_ignores_a_missing_container_but_not_a_missing_environment():
    def answer(body):
        return lambda request: httpx.Response(404, json=body)

    await orchestrator(answer({"message": "No such container: abc123"})).remove(WORKLOAD)
    with pytest.raises(OrchestratorError, match="env_id"):
        await orchestrator(answer({"message": "Unable to find an environment", "details": "Object not found"})).remove(
            WORKLOAD
        )


async def test_network_failure_is_orchestrator_unavailable():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(OrchestratorUnavailable, match="unreachable"):
        await orchestrator(handler).list_workloads(manager_id="m")


def test_container_payload_has_labels_stack_network_restart_policy_and_ca_mount(tmp_path):
    spec = make_spec("m1", "img:1", name="conn", files=(MountedFile("/etc/ssl/ca.crt", "PEM"),))
    settings = SETTINGS.model_copy(update={"stack": "opencti", "network_mode": "opencti_default"})
    body = container_create_body(spec, settings, image="reg/img:1", file_sources={"/etc/ssl/ca.crt": tmp_path / "ca"})
    assert body["Image"] == "reg/img:1" and body["Env"] == [f"{k}={v}" for k, v in spec.env]
    assert body["Labels"] == {**spec.labels, "opencti-config-hash": "h1", "com.docker.compose.project": "opencti"}
    host = body["HostConfig"]
    assert host["NetworkMode"] == "opencti_default"
    assert host["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 0}
    assert host["Mounts"] == [
        {"Target": "/etc/ssl/ca.crt", "Source": str(tmp_path / "ca"), "Type": "bind", "ReadOnly": True}
    ]
