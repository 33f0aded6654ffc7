"""Portainer fixtures: the test proxy (plain HTTP or TLS from a throw-away CA) in front of the real engine."""

from __future__ import annotations

from collections.abc import Iterator

import docker
import pytest
import trustme

from xtm_composer.config.settings import PortainerSettings

from .proxy import PortainerProxy

API_KEY = "ptr_test-key-9f1c"


@pytest.fixture(scope="session")
def engine_api_version(docker_client: docker.DockerClient) -> str:
    return f"v{docker_client.version()['ApiVersion']}"


@pytest.fixture
def portainer(docker_client: docker.DockerClient) -> Iterator[PortainerProxy]:
    proxy = PortainerProxy(api_key=API_KEY).start()
    yield proxy
    proxy.stop()


@pytest.fixture
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_portainer(docker_client: docker.DockerClient, tls_ca: trustme.CA, tmp_path) -> Iterator[PortainerProxy]:
    cert = tls_ca.issue_cert("127.0.0.1", "localhost")
    certfile, keyfile = tmp_path / "proxy.crt", tmp_path / "proxy.key"
    cert.cert_chain_pems[0].write_to_path(str(certfile))
    cert.private_key_pem.write_to_path(str(keyfile))
    proxy = PortainerProxy(api_key=API_KEY, certfile=certfile, keyfile=keyfile).start()
    yield proxy
    proxy.stop()


def settings_for(proxy: PortainerProxy, api_version: str, **extra) -> PortainerSettings:
    values = {"api": proxy.url, "api_key": API_KEY, "env_id": 3, "api_version": api_version, **extra}
    return PortainerSettings(**values)
