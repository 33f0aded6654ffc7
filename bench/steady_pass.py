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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import docker
from common import HEADER, EmulatorProcess, PassFigures, RequestCounter, measure

from xtm_composer.config.settings import DaemonSettings, LoggerSettings, ManagerSettings, PlatformSettings, Settings
from xtm_composer.crypto import generate_private_key
from xtm_composer.daemon import build_runtime
from xtm_composer.domain import LABEL_MANAGER, PlatformKind
from xtm_composer.emulator.client import EmulatorAdmin
from xtm_composer.images import DEMO_IMAGE, ensure_demo_image
from xtm_composer.observability import configure_logging
from xtm_composer.orchestrators.docker_engine import DockerOrchestrator
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient

TOKEN = "bench-token"


async def bench(n: int, client: docker.DockerClient) -> tuple[PassFigures, PassFigures, float]:
    emulator = EmulatorProcess(TOKEN)
    manager_id = f"bench-{n}-{os.getpid()}"
    try:
        settings = Settings(
            manager=ManagerSettings(id=manager_id, execute_schedule=10),
            opencti=PlatformSettings(
                enable=True, url=emulator.url, token=TOKEN, logs_schedule=10, daemon=DaemonSettings(selector="docker")
            ),
        )
        requests = RequestCounter()
        orchestrator = DockerOrchestrator()
        runtime = build_runtime(
            PlatformKind.OPENCTI,
            settings=settings,
            platform=OpenCTIClient(build_async_client(settings.opencti, event_hooks={"request": [requests]})),
            orchestrator=orchestrator,
            private_key=generate_private_key(),
        )
        now = [0.0]
        runtime.clock = lambda: now[0]  # timers driven by hand: "due" or "not due" on purpose
        await runtime.platform.register(manager_id=manager_id, name="bench", public_key=runtime.public_key)
        with EmulatorAdmin(emulator.url, TOKEN) as admin:
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
            now[0] += 100
            if (await measure(runtime, lambda: orchestrator.api_calls, requests)).actions == 0:
                break
        cold = time.perf_counter() - cold_started
        now[0] += 1  # nothing due
        steady = await measure(runtime, lambda: orchestrator.api_calls, requests)
        now[0] += 100  # logs and health due for every connector
        reporting = await measure(runtime, lambda: orchestrator.api_calls, requests)
        await runtime.close()
        return steady, reporting, cold
    finally:
        emulator.stop()
        for container in client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"}):
            container.remove(force=True)


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [50, 200]
    configure_logging(LoggerSettings(level="warning", format="pretty"))
    client = docker.from_env(timeout=120)
    ensure_demo_image(client)
    print(f"{'N':>10} {'pass':>10} {HEADER}")
    for n in sizes:
        steady, reporting, cold = asyncio.run(bench(n, client))
        print(steady.row(n, "steady"))
        print(reporting.row(n, "reporting"))
        print(f"{n:>10} {'cold start':>10} {cold:8.1f}  (all containers deployed, started and reported)")


if __name__ == "__main__":
    main()
