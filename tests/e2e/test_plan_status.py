"""`xtm-composer plan` changes nothing and shows what a pass would do; `xtm-composer status` shows
the fleet, including the last error a running composer met."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xtm_composer.crypto import load_private_key_file, public_key_pkcs1_pem
from xtm_composer.domain import LABEL_MANAGER

from .conftest import EXECUTE_SCHEDULE, TOKEN, wait_until

pytestmark = pytest.mark.engine


def cli(args, tmp_path, url, key_file, manager_id):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DOCKER_HOST": os.environ.get("DOCKER_HOST", ""),
        "COLUMNS": "200",
        "MANAGER__ID": manager_id,
        "MANAGER__CREDENTIALS_KEY_FILEPATH": str(key_file),
        "MANAGER__DATA_DIRECTORY": str(tmp_path / "data"),
        "OPENCTI__ENABLE": "true",
        "OPENCTI__URL": url,
        "OPENCTI__TOKEN": TOKEN,
        "OPENCTI__DAEMON__SELECTOR": "docker",
    }
    result = subprocess.run(
        [sys.executable, "-m", "xtm_composer", *args, "--config-dir", str(tmp_path / "none")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_plan_shows_actions_and_changes_nothing(docker_client, demo_image, manager_id, emulator, key_file, tmp_path):
    key = load_private_key_file(key_file)
    emulator.state.register_manager(manager_id, "running composer", public_key_pkcs1_pem(key))
    emulator.admin.add_connector("Plan Me", demo_image, start=True)
    emulator.admin.add_connector("Leave Me Stopped", demo_image)
    out = cli(["plan"], tmp_path, emulator.server.url, key_file, manager_id)
    assert "deploy plan-me for 'Plan Me' and start it" in out
    assert "deploy leave-me-stopped" in out
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"}) == []
    assert all(c["current_status"] is None for c in emulator.admin.list())


def test_status_shows_running_connectors_and_the_last_error(
    demo_image, manager_id, emulator, key_file, tmp_path, start_composer
):
    running = emulator.admin.add_connector("Status Runner", demo_image, start=True)
    emulator.admin.add_connector("Broken Image", "registry.invalid/none/such:1", start=True)
    composer = start_composer(emulator.server.url, MANAGER__DATA_DIRECTORY=str(tmp_path / "data"))
    wait_until(
        lambda: emulator.admin.get(running["id"])["current_status"] == "started",
        timeout=6 * EXECUTE_SCHEDULE,
        what="the runner started",
    )
    wait_until(
        lambda: (
            (tmp_path / "data" / "status-opencti.json").exists()
            and "pull" in (tmp_path / "data" / "status-opencti.json").read_text()
        ),
        timeout=20,
        what="status file",
    )
    out = cli(["status"], tmp_path, emulator.server.url, key_file, manager_id)
    runner_line = next(line for line in out.splitlines() if "Status Runner" in line)
    assert "running" in runner_line and "starting" in runner_line and " no " in runner_line
    broken_line = next(line for line in out.splitlines() if "Broken Image" in line)
    assert "missing" in broken_line and "pull" in out
    assert composer.stop() == 0
