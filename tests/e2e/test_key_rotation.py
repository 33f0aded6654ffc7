"""Key rotation without downtime: after `xtm-composer keys rotate`, the running composer registers
the new public key, and values saved under the old key and under the new one both decrypt."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from xtm_composer.domain import LABEL_CONNECTOR_ID, LABEL_MANAGER
from xtm_composer.orchestrators.specs import split_env_line

from .conftest import TOKEN, wait_until

pytestmark = pytest.mark.engine


def env_of(docker_client, manager_id, connector_id):
    for container in docker_client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"}):
        if container.labels.get(LABEL_CONNECTOR_ID) == connector_id and container.status == "running":
            return dict(split_env_line(line) for line in container.attrs["Config"]["Env"])
    return None


def cli(args, tmp_path, url, key_file, manager_id):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DOCKER_HOST": os.environ.get("DOCKER_HOST", ""),
        "MANAGER__ID": manager_id,
        "MANAGER__CREDENTIALS_KEY_FILEPATH": str(key_file),
        "OPENCTI__ENABLE": "true",
        "OPENCTI__URL": url,
        "OPENCTI__TOKEN": TOKEN,
        "OPENCTI__DAEMON__SELECTOR": "docker",
    }
    return subprocess.run(
        [sys.executable, "-m", "xtm_composer", *args, "--config-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_rotation_end_to_end(docker_client, demo_image, manager_id, emulator, key_file, tmp_path, start_composer):
    composer = start_composer(emulator.server.url)
    wait_until(emulator.state.manager, timeout=20, what="registration")
    old_public = emulator.state.manager().public_key
    before = emulator.admin.add_connector(
        f"Before {manager_id}", demo_image, secrets={"OLD_SECRET": "old=1\n✓"}, start=True
    )
    wait_until(lambda: env_of(docker_client, manager_id, before["id"]), timeout=20, what="first connector")

    rotated = cli(["keys", "rotate"], tmp_path, emulator.server.url, key_file, manager_id)
    assert rotated.returncode == 0, rotated.stderr
    kept = list((key_file.parent / f"{key_file.name}.previous").glob("*.pem"))
    assert len(kept) == 1 and stat.S_IMODE(kept[0].stat().st_mode) == 0o600
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    wait_until(lambda: emulator.state.manager().public_key != old_public, timeout=20, what="new key registered")
    after = emulator.admin.add_connector(f"After {manager_id}", demo_image, secrets={"NEW_SECRET": "new=2"}, start=True)
    assert (
        wait_until(
            lambda: env_of(docker_client, manager_id, after["id"]),
            timeout=20,
            what="connector saved after the rotation",
        )["NEW_SECRET"]
        == "new=2"
    )

    # Recreating the first connector decrypts its old value with the previous key.
    old_id = next(
        c.id for c in docker_client.containers.list(filters={"label": f"{LABEL_CONNECTOR_ID}={before['id']}"})
    )
    emulator.admin.edit(before["id"], config={"CHANGED": "yes"})
    env = wait_until(
        lambda: (e := env_of(docker_client, manager_id, before["id"])) and e.get("CHANGED") == "yes" and e,
        timeout=20,
        what="recreation with the old secret",
    )
    assert env["OLD_SECRET"] == "old=1\n✓"
    assert (
        next(c.id for c in docker_client.containers.list(filters={"label": f"{LABEL_CONNECTOR_ID}={before['id']}"}))
        != old_id
    )

    report = cli(["check"], tmp_path, emulator.server.url, key_file, manager_id)
    secrets_line = next(line for line in report.stdout.splitlines() if "opencti secrets" in line)
    assert "still need a previous key" in secrets_line and " 0 still need" not in secrets_line
    assert composer.stop() == 0
    assert "old=1" not in composer.log_text() and "new=2" not in composer.log_text()
