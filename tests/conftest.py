"""Session fixtures for tests that need a real Docker Engine (marked `@pytest.mark.engine`).

`scripts/test` points DOCKER_HOST at an engine and sets XTM_REQUIRE_ENGINE=1, which turns a missing
engine into a failure; a bare `pytest` without an engine skips those tests instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import docker
import docker.errors
import pytest

from xtm_composer import images

MANAGER_LABEL = "opencti-manager"


@pytest.fixture(scope="session")
def docker_client() -> Iterator[docker.DockerClient]:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:
        message = f"no Docker Engine answers (DOCKER_HOST={os.environ.get('DOCKER_HOST', '')!r}): {exc}"
        if os.environ.get("XTM_REQUIRE_ENGINE") == "1":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    yield client
    client.close()


@pytest.fixture(autouse=True)
def _engine_marker(request: pytest.FixtureRequest) -> None:
    # Engine tests skip or fail up front, even those that reach the engine only through other fixtures.
    if request.node.get_closest_marker("engine"):
        request.getfixturevalue("docker_client")


@pytest.fixture(scope="session")
def busybox_image(docker_client: docker.DockerClient) -> str:
    images.ensure_image(docker_client, images.BUSYBOX_IMAGE)
    return images.BUSYBOX_IMAGE


@pytest.fixture(scope="session")
def demo_image(docker_client: docker.DockerClient) -> str:
    images.ensure_demo_image(docker_client)
    return images.DEMO_IMAGE


@pytest.fixture
def manager_id(docker_client: docker.DockerClient) -> Iterator[str]:
    """A manager id of this test's own; whatever carries its label is removed afterwards."""
    ident = f"test-{uuid.uuid4().hex[:10]}"
    yield ident
    label = {"label": f"{MANAGER_LABEL}={ident}"}
    try:
        services = docker_client.services.list(filters=label)
    except docker.errors.APIError:
        services = []  # not a swarm manager: there can be no services
    for service in services:
        service.remove()
    for container in docker_client.containers.list(all=True, filters=label):
        try:
            container.remove(force=True, v=True)
        except docker.errors.NotFound:
            pass  # removed meanwhile, e.g. a service task or an auto-remove container
