"""SIGTERM ends the composer quickly with exit code 0 even when the engine or the platform hangs."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState

from ..paths import SHARED_VECTORS


@pytest.fixture
def hung_engine(tmp_path):
    """A unix socket that accepts connections and never answers: a frozen dockerd."""
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(path))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"unix://{path}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def composer(tmp_path, url, docker_host):
    key = tmp_path / "key.pem"
    key.write_bytes((SHARED_VECTORS / "test-key.pkcs8.pem").read_bytes())
    key.chmod(0o600)
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DOCKER_HOST": docker_host,
        "MANAGER__ID": "shutdown-test",
        "MANAGER__CREDENTIALS_KEY_FILEPATH": str(key),
        "MANAGER__EXECUTE_SCHEDULE": "1",
        "MANAGER__DATA_DIRECTORY": str(tmp_path / "data"),
        "OPENCTI__ENABLE": "true",
        "OPENCTI__URL": url,
        "OPENCTI__TOKEN": "T",
        "OPENCTI__DAEMON__SELECTOR": "docker",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "xtm_composer", "run", "--config-dir", str(tmp_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def stop_and_time(process) -> tuple[int, float]:
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=60)
    return process.returncode, time.monotonic() - started


def test_sigterm_with_a_hung_engine_exits_zero_within_ten_seconds(tmp_path, hung_engine):
    state = EmulatorState(token="T")
    state.add_connector("Waiting", "img:1", start=True)
    with EmulatorServer(state) as emulator:
        process = composer(tmp_path, emulator.url, hung_engine)
        time.sleep(4)  # registered, and a pass is stuck listing containers
        code, seconds = stop_and_time(process)
    assert code == 0 and seconds < 10


def test_sigterm_with_a_hung_platform_exits_zero_within_ten_seconds(tmp_path, hung_engine):
    state = EmulatorState(token="T")
    with EmulatorServer(state) as emulator:
        process = composer(tmp_path, emulator.url, hung_engine)
        time.sleep(3)
        state.set_platform(fault="slow")  # the next listing hangs (longer than the grace)
        time.sleep(2)
        code, seconds = stop_and_time(process)
        state.set_platform(fault="none")
    assert code == 0 and seconds < 10
