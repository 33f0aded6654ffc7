"""What the benchmarks share: the emulator in its own process, call counting, one measured pass."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from xtm_composer.daemon import PlatformRuntime


@dataclass
class PassFigures:
    wall: float
    cpu: float
    engine_calls: int
    platform_calls: int
    decryptions: int
    actions: int

    def row(self, *labels: object) -> str:
        head = " ".join(f"{label!s:>10}" for label in labels)
        return (
            f"{head} {self.wall:8.3f} {self.cpu:7.3f} {self.engine_calls:7d} {self.platform_calls:9d} "
            f"{self.decryptions:8d} {self.actions:8d}"
        )


HEADER = f"{'wall s':>8} {'cpu s':>7} {'engine':>7} {'platform':>9} {'decrypt':>8} {'actions':>8}"


class EmulatorProcess:
    """`xtm-composer emulator serve` on a free port, in its own process (its CPU is not ours)."""

    def __init__(self, token: str) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xtm_composer", "emulator", "serve", "--port", str(self.port), "--token", token],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.url}/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("the emulator did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


class RequestCounter:
    """An httpx event hook counting the requests a platform client sends."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, _request: httpx.Request) -> None:
        self.count += 1


async def measure(runtime: PlatformRuntime, engine_calls: Callable[[], int], platform: RequestCounter) -> PassFigures:
    engine_before, platform_before = engine_calls(), platform.count
    wall, cpu = time.perf_counter(), time.process_time()
    result = await runtime.reconcile_once()
    return PassFigures(
        wall=time.perf_counter() - wall,
        cpu=time.process_time() - cpu,
        engine_calls=engine_calls() - engine_before,
        platform_calls=platform.count - platform_before,
        decryptions=result.report.decryptions,
        actions=len(result.report.outcomes),
    )
