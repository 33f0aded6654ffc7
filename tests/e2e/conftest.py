"""End-to-end fixtures: the emulator over real HTTP, `xtm-composer run` as a subprocess, the real engine."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from xtm_composer.emulator.client import EmulatorAdmin
from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState

from ..paths import SHARED_VECTORS

TOKEN = "e2e-token-6c1f"
EXECUTE_SCHEDULE = 2.0


@dataclass
class Emulator:
    state: EmulatorState
    server: EmulatorServer
    admin: EmulatorAdmin


@pytest.fixture
def emulator() -> Iterator[Emulator]:
    state = EmulatorState(token=TOKEN)
    server = EmulatorServer(state).start()
    admin = EmulatorAdmin(server.url, TOKEN)
    yield Emulator(state=state, server=server, admin=admin)
    admin.close()
    server.stop()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "composer-key.pem"
    shutil.copyfile(SHARED_VECTORS / "test-key.pkcs8.pem", path)
    path.chmod(0o600)
    return path


@dataclass
class Composer:
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=timeout)


@pytest.fixture
def start_composer(tmp_path: Path, key_file: Path, manager_id: str) -> Iterator[Callable[..., Composer]]:
    started: list[Composer] = []

    def start(url: str, **extra_env: str) -> Composer:
        log_path = tmp_path / f"composer-{len(started)}.log"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "DOCKER_HOST": os.environ.get("DOCKER_HOST", ""),
            "MANAGER__ID": manager_id,
            "MANAGER__NAME": "e2e composer",
            "MANAGER__CREDENTIALS_KEY_FILEPATH": str(key_file),
            "MANAGER__EXECUTE_SCHEDULE": str(EXECUTE_SCHEDULE),
            "MANAGER__PING_ALIVE_SCHEDULE": "2",
            "MANAGER__LOGGER__FORMAT": "json",
            "MANAGER__LOGGER__LEVEL": "debug",
            "OPENCTI__ENABLE": "true",
            "OPENCTI__URL": url,
            "OPENCTI__TOKEN": TOKEN,
            "OPENCTI__LOGS_SCHEDULE": "1",
            "OPENCTI__REQUEST_TIMEOUT": "5",
            "OPENCTI__CONNECT_TIMEOUT": "2",
            "OPENCTI__DAEMON__SELECTOR": "docker",
            **extra_env,
        }
        handle = log_path.open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "xtm_composer", "run", "--config-dir", str(tmp_path / "no-config")],
            stdout=handle,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
        composer = Composer(process=process, log_path=log_path)
        started.append(composer)
        return composer

    yield start
    for composer in started:
        if composer.process.poll() is None:
            composer.process.kill()
            composer.process.wait()


def wait_until(predicate: Callable[[], object], *, timeout: float, interval: float = 0.25, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last value: {last!r})")
