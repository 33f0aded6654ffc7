"""Swarm fixtures: the engine made a swarm manager for this session (or reused if it already is one).

`docker swarm init` binds loopback only; the swarm is left at session end only if this session
created it. Services are removed by the `manager_id` fixture (tests/conftest.py); the file configs
our services use are removed here at session end when the swarm is kept.
"""

from __future__ import annotations

from collections.abc import Iterator

import docker
import docker.errors
import pytest

from xtm_composer.orchestrators.swarm_options import CONFIG_PREFIX


@pytest.fixture(scope="session")
def swarm(docker_client: docker.DockerClient) -> Iterator[docker.DockerClient]:
    info = docker_client.info().get("Swarm") or {}
    state = info.get("LocalNodeState")
    created = False
    if state == "inactive":
        docker_client.swarm.init(advertise_addr="127.0.0.1", listen_addr="127.0.0.1:2377")
        created = True
    elif state != "active" or not info.get("ControlAvailable"):
        pytest.fail(f"the engine is in swarm state {state!r} and not a manager: cannot run Swarm tests", pytrace=False)
    yield docker_client
    if created:
        docker_client.swarm.leave(force=True)
        return
    for config in docker_client.api.configs():
        name = (config.get("Spec") or {}).get("Name", "")
        labels = (config.get("Spec") or {}).get("Labels") or {}
        if name.startswith(CONFIG_PREFIX) and labels.get("opencti-manager", "").startswith("test-"):
            try:
                docker_client.api.remove_config(config["ID"])
            except docker.errors.APIError:
                pass  # still used by a service of a test that is not ours
