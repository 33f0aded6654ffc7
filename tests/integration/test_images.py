"""Offline busybox images, built and run on the real engine."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest
from docker.models.containers import Container

from xtm_composer import images

from ..conftest import MANAGER_LABEL


def _run(client: docker.DockerClient, manager_id: str, image: str, **kwargs: Any) -> Container:
    labels = {MANAGER_LABEL: manager_id}
    return client.containers.run(image, detach=True, labels=labels, **kwargs)


def _lines(container: Container) -> list[str]:
    return container.logs().decode().splitlines()


def _wait_for_lines(container: Container, count: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = _lines(container)
        if len(lines) >= count:
            return lines
        time.sleep(0.2)
    raise AssertionError(f"expected {count} log lines within {timeout}s, got: {_lines(container)}")


@pytest.fixture
def scratch_ref(docker_client: docker.DockerClient, manager_id: str) -> Iterator[str]:
    """An image name for this test only, removed afterwards."""
    ref = f"xtm-composer-test/{manager_id}:1"
    yield ref
    try:
        docker_client.images.remove(ref, force=True)
    except docker.errors.ImageNotFound:
        pass


@pytest.mark.engine
def test_busybox_image_has_users_tmp_and_applets(
    docker_client: docker.DockerClient, busybox_image: str, manager_id: str
) -> None:
    script = "id -un; ls -ld /tmp; grep -c . /etc/passwd; echo $PATH; wget --help >/dev/null 2>&1 && echo ok"
    container = _run(docker_client, manager_id, busybox_image, command=["sh", "-c", script])
    assert container.wait(timeout=30)["StatusCode"] == 0
    user, tmp, passwd_lines, path, applet = _lines(container)
    assert user == "root"
    assert tmp.startswith("drwxrwxrwt")
    assert passwd_lines == "2"
    assert path == "/bin"
    assert applet == "ok"


@pytest.mark.engine
def test_runs_as_nobody(docker_client: docker.DockerClient, busybox_image: str, manager_id: str) -> None:
    container = _run(docker_client, manager_id, busybox_image, command=["id"], user="nobody")
    assert container.wait(timeout=30)["StatusCode"] == 0
    assert _lines(container) == ["uid=65534(nobody) gid=65534(nobody) groups=65534(nobody)"]


@pytest.mark.engine
def test_extra_files_cmd_and_env(docker_client: docker.DockerClient, manager_id: str, scratch_ref: str) -> None:
    tricky = 'say "hi" to $HOME \\ now'
    repository, tag = images.split_ref(scratch_ref)
    image_id = images.build_busybox_image(
        docker_client,
        repository,
        tag,
        extra_files={
            "/opt/app/run.sh": (b'#!/bin/sh\necho "$GREETING"\ncat /opt/app/data\n', 0o755),
            "opt/app/data": (b"payload\n", 0o600),
        },
        cmd=["/opt/app/run.sh"],
        env={"GREETING": tricky},
    )
    assert image_id.startswith("sha256:")
    container = _run(docker_client, manager_id, scratch_ref)
    assert container.wait(timeout=30)["StatusCode"] == 0
    assert _lines(container) == [tricky, "payload"]


@pytest.mark.engine
def test_ensure_image_builds_once_and_tag_aliases(
    docker_client: docker.DockerClient, busybox_image: str, scratch_ref: str
) -> None:
    first = images.ensure_image(docker_client, busybox_image)
    assert images.ensure_image(docker_client, busybox_image) == first
    assert images.tag_image(docker_client, busybox_image, scratch_ref) == first
    assert docker_client.images.get(scratch_ref).id == first
    # Same name, different content: rebuilt rather than reused.
    rebuilt = images.ensure_image(docker_client, scratch_ref, env={"EXTRA": "1"})
    assert rebuilt != first
    assert docker_client.images.get(busybox_image).id == first


@pytest.mark.engine
def test_demo_connector_logs_names_not_values_and_stops_fast(
    docker_client: docker.DockerClient, demo_image: str, manager_id: str
) -> None:
    env = {
        "CONNECTOR_NAME": "AlienVault",
        "CONNECTOR_TYPE": "EXTERNAL_IMPORT",
        "OPENCTI_TOKEN": "s3cr3t-token-value",
        "DEMO_INTERVAL": "0.3",
    }
    container = _run(docker_client, manager_id, demo_image, environment=env)
    lines = _wait_for_lines(container, 3, timeout=20)
    records = [json.loads(line) for line in lines]
    assert {"timestamp", "level", "name", "message"} <= set(records[0])
    assert all(r["name"] == "AlienVault" and r["level"] == "info" for r in records)
    startup = records[0]["message"]
    assert "AlienVault" in startup and "EXTERNAL_IMPORT" in startup
    assert "OPENCTI_TOKEN" in startup
    assert "s3cr3t" not in "\n".join(lines)
    assert records[1]["message"].startswith("Connector registered")

    started = time.monotonic()
    container.stop(timeout=10)
    assert time.monotonic() - started < 3, "SIGTERM should stop the connector at once"
    container.reload()
    assert container.attrs["State"]["ExitCode"] == 0


@pytest.mark.engine
def test_demo_connector_crashes_on_demand(docker_client: docker.DockerClient, demo_image: str, manager_id: str) -> None:
    container = _run(docker_client, manager_id, demo_image, environment={"DEMO_CRASH": "1"})
    assert container.wait(timeout=30)["StatusCode"] == 1
    (line,) = _lines(container)
    assert json.loads(line)["level"] == "error"


def test_dynamic_busybox_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    dynamic = Path(sys.executable).resolve()  # a dynamically linked ELF on Linux distributions
    if not images._has_interpreter(dynamic.read_bytes()):
        pytest.skip("this Python is statically linked")
    monkeypatch.setattr(images, "find_busybox", lambda: dynamic)
    images._busybox.cache_clear()
    try:
        with pytest.raises(images.BusyboxError, match="busybox-static is required"):
            images._busybox()
    finally:
        images._busybox.cache_clear()
