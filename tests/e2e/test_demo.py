"""`xtm-composer demo` runs the connectors for real and leaves no container behind."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from xtm_composer.demo import DEMO_MANAGER_ID
from xtm_composer.domain import LABEL_MANAGER

pytestmark = pytest.mark.engine


def test_demo_runs_connectors_and_cleans_up(docker_client, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "xtm_composer", "demo", "--duration", "15", "--no-story"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, "COLUMNS": "160"},
    )
    assert result.returncode == 0, result.stderr
    assert "running" in result.stdout and "started" in result.stdout
    assert "openaev" in result.stdout and "Collector" in result.stdout
    assert "removed 6 demo containers" in result.stdout  # 4 OpenCTI connectors, 2 OpenAEV collectors
    assert docker_client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={DEMO_MANAGER_ID}"}) == []
    for secret in (
        "demo-urlhaus-0f3c9a7e5b1d4c2a",
        "demo-otx-6b2e8d41c07f59a3e1d2c4b5a6978f00",
        "demo-defender-5c1e7a0b9d3f",
    ):
        assert secret not in result.stdout + result.stderr


def test_demo_without_engine_says_what_is_missing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "xtm_composer", "demo", "--duration", "5"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env={**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/nothing.sock"},
    )
    assert result.returncode == 1
    assert "no Docker Engine reachable" in result.stderr and "Traceback" not in result.stderr
