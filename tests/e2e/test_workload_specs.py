"""Exact workloads on the real engine: cleaned names, byte-exact env values, registry-prefixed images,
Docker options and the proxy CA bundle mounted read-only."""

from __future__ import annotations

import docker
import pytest
import trustme

from xtm_composer.config.settings import (
    DaemonSettings,
    DockerSettings,
    ManagerSettings,
    PlatformSettings,
    RegistrySettings,
    Settings,
)
from xtm_composer.crypto import load_private_key_file
from xtm_composer.daemon import build_runtime
from xtm_composer.domain import LABEL_CONNECTOR_ID, LABEL_MANAGER, PlatformKind
from xtm_composer.orchestrators.docker_engine import DockerOrchestrator
from xtm_composer.orchestrators.specs import is_dns_label, split_env_line
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient
from xtm_composer.proxy import PROXY_CA_PATH

from ..paths import SHARED_VECTORS
from .conftest import TOKEN

pytestmark = pytest.mark.engine

EXACT_VALUES = {
    "WITH_EQUALS": "https://x.example/?a=b&c==d",
    "MULTILINE": "line1\nline2\r\n\tindented",
    "NON_ASCII": "威胁情报 — Ünïcödé ✓ 🚀",
    "QUOTES": "'single' \"double\" `tick` $VAR \\backslash",
    "EMPTY": "",
}


def make_runtime(url: str, manager_id: str, tmp_path, *, registry=None, with_proxy=False, ca=None, docker_opts=None):
    opencti = PlatformSettings(
        enable=True,
        url=url,
        token=TOKEN,
        with_proxy=with_proxy,
        https_proxy="http://proxy.invalid:3128",
        https_proxy_ca=ca,
        daemon=DaemonSettings(selector="docker", registry=registry, docker=docker_opts or {}),
    )
    settings = Settings(manager=ManagerSettings(id=manager_id, data_directory=tmp_path / "data"), opencti=opencti)
    return build_runtime(
        PlatformKind.OPENCTI,
        settings=settings,
        platform=OpenCTIClient(build_async_client(opencti)),
        orchestrator=DockerOrchestrator(
            options=opencti.daemon.docker, registry=registry, files_directory=tmp_path / "data"
        ),
        private_key=load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem"),
    )


def container_of(client: docker.DockerClient, manager_id: str, connector_id: str):
    (container,) = [
        c
        for c in client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"})
        if c.labels.get(LABEL_CONNECTOR_ID) == connector_id
    ]
    return container


async def converge(runtime, passes=2):
    await runtime.platform.register(manager_id=runtime.manager_id, name="t", public_key=runtime.public_key)
    for _ in range(passes):
        await runtime.reconcile_once()


async def test_cleaned_names_and_byte_exact_values(docker_client, demo_image, manager_id, emulator, tmp_path):
    runtime = make_runtime(emulator.server.url, manager_id, tmp_path)
    weird = emulator.state.add_connector(
        f"Ünïcödé Feed — 威胁情报 {manager_id}!!",
        demo_image,
        config=EXACT_VALUES,
        secrets={"SECRET_MULTI": "a=b\nc ✓"},
        start=True,
    )
    plain = emulator.state.add_connector(f"Abuse.ch URLhaus {manager_id}", demo_image, start=True)
    await converge(runtime)
    container = container_of(docker_client, manager_id, weird.id)
    assert is_dns_label(container.name) and container.name.startswith("unicode-feed")
    env = dict(split_env_line(line) for line in container.attrs["Config"]["Env"])
    for key, value in EXACT_VALUES.items():
        assert env[key] == value
    assert env["SECRET_MULTI"] == "a=b\nc ✓"
    assert container_of(docker_client, manager_id, plain.id).name == f"abuse-ch-urlhaus-{manager_id}"
    await runtime.close()


async def test_registry_prefixed_image_and_docker_options(docker_client, demo_image, manager_id, emulator, tmp_path):
    registry = RegistrySettings(server="registry.test.invalid:5000/", username="u", password="p")
    docker_client.images.get(demo_image).tag("registry.test.invalid:5000/opencti/connector-demo", "6.8.3")
    runtime = make_runtime(
        emulator.server.url,
        manager_id,
        tmp_path,
        registry=registry,
        docker_opts=DockerSettings(
            dns=["9.9.9.9"],
            cap_drop=["MKNOD"],
            sysctls={"net.ipv4.ip_unprivileged_port_start": 0},
            ulimits=[{"name": "nofile", "soft": 4096, "hard": 8192}],
            shm_size="32m",
        ),
    )
    connector = emulator.state.add_connector(f"Registry {manager_id}", "/opencti/connector-demo:6.8.3", start=True)
    await converge(runtime)
    container = container_of(docker_client, manager_id, connector.id)
    assert container.attrs["Config"]["Image"] == "registry.test.invalid:5000/opencti/connector-demo:6.8.3"
    host = container.attrs["HostConfig"]
    assert host["Dns"] == ["9.9.9.9"] and host["CapDrop"] == ["MKNOD"] and host["ShmSize"] == 32 * 1024 * 1024
    assert host["Sysctls"] == {"net.ipv4.ip_unprivileged_port_start": "0"}
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 4096, "Hard": 8192}]
    assert container.status == "running"
    await runtime.close()


async def test_proxy_ca_bundle_is_mounted_read_only_with_its_env(
    docker_client, demo_image, manager_id, emulator, tmp_path
):
    ca = trustme.CA().cert_pem.bytes().decode()
    runtime = make_runtime(emulator.server.url, manager_id, tmp_path, with_proxy=True, ca=[ca])
    connector = emulator.state.add_connector(f"Proxied {manager_id}", demo_image, start=True)
    await converge(runtime)
    container = container_of(docker_client, manager_id, connector.id)
    env = dict(split_env_line(line) for line in container.attrs["Config"]["Env"])
    assert env["HTTPS_PROXY"] == "http://proxy.invalid:3128" and env["REQUESTS_CA_BUNDLE"] == PROXY_CA_PATH
    (mount,) = [m for m in container.attrs["Mounts"] if m["Destination"] == PROXY_CA_PATH]
    assert mount["RW"] is False
    code, output = container.exec_run(["cat", PROXY_CA_PATH])
    assert code == 0 and output.decode().strip() == ca.strip()
    code, _ = container.exec_run(["sh", "-c", f"echo x >> {PROXY_CA_PATH}"])
    assert code != 0
    await runtime.close()
