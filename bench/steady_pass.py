"""Benchmark: cost of a reconcile pass on the real Docker Engine, against the emulator over HTTP.

For each N it seeds N connectors (each with one secret), lets the composer converge (cold
start: every container deployed and started), then measures
  - a steady pass: nothing changed, no log or health report due;
  - a reporting pass: logs and health due for every connector (what every `logs_schedule`
    and 30 s look like);
and prints wall time, CPU time of the composer process, engine API calls, platform calls and
decryptions. The emulator runs in its own process so its CPU is not counted.

    DOCKER_HOST=unix://… python bench/steady_pass.py [N ...]     (default: 50 200)
"""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import docker
import httpx

from xtm_composer.config.settings import DaemonSettings, LoggerSettings, ManagerSettings, PlatformSettings, Settings
from xtm_composer.crypto import generate_private_key
from xtm_composer.daemon import PlatformRuntime, build_runtime
from xtm_composer.domain import LABEL_MANAGER, PlatformKind
from xtm_composer.emulator.client import EmulatorAdmin
from xtm_composer.images import DEMO_IMAGE, ensure_demo_image
from xtm_composer.observability import configure_logging
from xtm_composer.orchestrators.docker_engine import DockerOrchestrator
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient

TOKEN = "bench-token"


@dataclass
class Measure:
    wall: float
    cpu: float
    engine_calls: int
    platform_calls: int
    decryptions: int
    actions: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_emulator(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [sys.executable, "-m", "xtm_composer", "emulator", "serve", "--port", str(port), "--token", TOKEN],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
            return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the emulator did not start")


async def measured_pass(
    runtime: PlatformRuntime, orchestrator: DockerOrchestrator, platform_calls: list[int]
) -> Measure:
    engine_before, platform_before = orchestrator.api_calls, platform_calls[0]
    wall, cpu = time.perf_counter(), time.process_time()
    result = await runtime.reconcile_once()
    return Measure(
        wall=time.perf_counter() - wall,
        cpu=time.process_time() - cpu,
        engine_calls=orchestrator.api_calls - engine_before,
        platform_calls=platform_calls[0] - platform_before,
        decryptions=result.report.decryptions,
        actions=len(result.report.outcomes),
    )


async def bench(n: int, client: docker.DockerClient) -> dict[str, Measure | float]:
    port = free_port()
    emulator = start_emulator(port)
    manager_id = f"bench-{n}-{os.getpid()}"
    url = f"http://127.0.0.1:{port}"
    try:
        key = generate_private_key()
        settings = Settings(
            manager=ManagerSettings(id=manager_id, execute_schedule=10, max_concurrent_actions=8),
            opencti=PlatformSettings(
                enable=True, url=url, token=TOKEN, logs_schedule=10, daemon=DaemonSettings(selector="docker")
            ),
        )
        platform_calls = [0]

        async def count(_request: httpx.Request) -> None:
            platform_calls[0] += 1

        orchestrator = DockerOrchestrator()
        runtime = build_runtime(
            PlatformKind.OPENCTI,
            settings=settings,
            platform=OpenCTIClient(build_async_client(settings.opencti, event_hooks={"request": [count]})),
            orchestrator=orchestrator,
            private_key=key,
        )
        fake_now = [0.0]
        runtime.clock = lambda: fake_now[0]  # timers are driven by hand: "due" or "not due" on purpose
        await runtime.platform.register(manager_id=manager_id, name="bench", public_key=runtime.public_key)
        with EmulatorAdmin(url, TOKEN) as admin:
            for i in range(n):
                admin.add_connector(
                    f"Bench Connector {i:04d}",
                    DEMO_IMAGE,
                    config={"DEMO_INTERVAL": "30"},
                    secrets={"BENCH_API_KEY": f"secret-{i}"},
                    start=True,
                )
        cold_started = time.perf_counter()
        for _ in range(6):  # converge: deploy+start, then report statuses, health and logs
            fake_now[0] += 100
            measure = await measured_pass(runtime, orchestrator, platform_calls)
            if measure.actions == 0:
                break
        cold = time.perf_counter() - cold_started
        fake_now[0] += 1  # nothing due
        steady = await measured_pass(runtime, orchestrator, platform_calls)
        fake_now[0] += 100  # logs and health due for every connector
        reporting = await measured_pass(runtime, orchestrator, platform_calls)
        await runtime.close()
        return {"cold": cold, "steady": steady, "reporting": reporting}
    finally:
        emulator.terminate()
        emulator.wait()
        for container in client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"}):
            container.remove(force=True)


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [50, 200]
    configure_logging(LoggerSettings(level="warning", format="pretty"))
    client = docker.from_env(timeout=120)
    ensure_demo_image(client)
    print(
        f"{'N':>5} {'pass':>10} {'wall s':>8} {'cpu s':>7} {'engine':>7} {'platform':>9} {'decrypt':>8} {'actions':>8}"
    )
    for n in sizes:
        results = asyncio.run(bench(n, client))
        for label in ("steady", "reporting"):
            m = results[label]
            assert isinstance(m, Measure)
            print(
                f"{n:>5} {label:>10} {m.wall:8.3f} {m.cpu:7.3f} {m.engine_calls:7d} {m.platform_calls:9d} "
                f"{m.decryptions:8d} {m.actions:8d}"
            )
        print(f"{n:>5} {'cold start':>10} {results['cold']:8.1f}  (all containers deployed, started and reported)")


if __name__ == "__main__":
    main()
