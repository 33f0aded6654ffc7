"""`daemon.selector: kubernetes` end to end through the CLI: `check` reaches the API server named by
a kubeconfig, and `run` deploys a connector from the emulator as a Deployment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState

from ..paths import SHARED_VECTORS


def kubeconfig(tmp_path: Path, host: str, namespace: str) -> Path:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [{"name": "fake", "cluster": {"server": host}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "test", "context": {"cluster": "fake", "user": "u", "namespace": namespace}}],
            }
        )
    )
    return path


def deployed(fake) -> set[str]:
    return {"abuse-ch-urlhaus"} if fake.deployment("abuse-ch-urlhaus") is not None else set()


def env_for(tmp_path, fake, url):
    key = tmp_path / "key.pem"
    key.write_bytes((SHARED_VECTORS / "test-key.pkcs8.pem").read_bytes())
    key.chmod(0o600)
    return {
        "PATH": os.environ.get("PATH", ""),
        "KUBECONFIG": str(kubeconfig(tmp_path, fake.host, fake.namespace)),
        "MANAGER__ID": "k8s-wiring",
        "MANAGER__CREDENTIALS_KEY_FILEPATH": str(key),
        "MANAGER__EXECUTE_SCHEDULE": "1",
        "MANAGER__DATA_DIRECTORY": str(tmp_path / "data"),
        "OPENCTI__ENABLE": "true",
        "OPENCTI__URL": url,
        "OPENCTI__TOKEN": "T",
        "OPENCTI__DAEMON__SELECTOR": "kubernetes",
    }


def test_check_and_run_with_the_kubernetes_selector(fake, tmp_path):
    state = EmulatorState(token="T")
    with EmulatorServer(state) as emulator:
        env = env_for(tmp_path, fake, emulator.url)
        command = [sys.executable, "-m", "xtm_composer"]
        checked = subprocess.run(
            [*command, "check", "--config-dir", str(tmp_path)], capture_output=True, text=True, env=env, timeout=60
        )
        assert checked.returncode == 0, checked.stdout + checked.stderr
        assert "[ok  ] opencti orchestrator (kubernetes)" in checked.stdout

        state.add_connector(
            "Abuse.ch URLhaus", "opencti/connector-urlhaus:6.8.3", secrets={"API_KEY": "s=1"}, start=True
        )
        composer = subprocess.Popen(
            [*command, "run", "--config-dir", str(tmp_path)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and "abuse-ch-urlhaus" not in deployed(fake):
                time.sleep(0.2)
            assert "abuse-ch-urlhaus" in deployed(fake)
        finally:
            composer.send_signal(signal.SIGTERM)
            output = composer.communicate(timeout=30)[0].decode()
        assert composer.returncode == 0, output
        assert "s=1" not in output
