"""Benchmark: reconcile passes at scale, against the emulator over HTTP and a simulated engine
with a fixed latency per call.

  steady pass   N = 100, 1000, 5000 connectors, everything converged, no report due:
                engine calls, platform calls, decryptions, wall and CPU time of the composer
  cold start    N = 200 connectors to deploy with 20 ms per engine call: sequential
                (one action at a time, as the Rust composer does) vs ours (bounded concurrency)

The emulator runs in its own process, so the CPU column is the composer's alone. Real-engine
figures come from bench/steady_pass.py.

    python bench/reconcile_scale.py [--sizes 100 1000 5000] [--cold 200] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import HEADER, EmulatorProcess, PassFigures, RequestCounter, measure

from xtm_composer.config.settings import (
    DaemonSettings,
    LoggerSettings,
    ManagerSettings,
    PlatformSettings,
    Settings,
)
from xtm_composer.crypto import load_private_key_file
from xtm_composer.daemon import PlatformRuntime, build_runtime
from xtm_composer.domain import PlatformKind
from xtm_composer.emulator.client import EmulatorAdmin
from xtm_composer.observability import configure_logging
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient
from xtm_composer.testing.simulated import SimulatedOrchestrator

TOKEN = "bench"
KEY_PATH = Path(__file__).resolve().parent.parent.parent / "shared" / "vectors" / "test-key.pkcs8.pem"


class Bench:
    def __init__(self, *, latency: float = 0.0, concurrency: int = 16) -> None:
        self.emulator = EmulatorProcess(TOKEN)
        self.engine = SimulatedOrchestrator(latency=latency)
        self.requests = RequestCounter()
        settings = Settings(
            manager=ManagerSettings(id="bench-manager", max_concurrent_actions=concurrency),
            opencti=PlatformSettings(
                enable=True,
                url=self.emulator.url,
                token=TOKEN,
                request_timeout=120,
                daemon=DaemonSettings(selector="docker"),
            ),
        )
        self.now = 0.0
        self.runtime: PlatformRuntime = build_runtime(
            PlatformKind.OPENCTI,
            settings=settings,
            platform=OpenCTIClient(build_async_client(settings.opencti, event_hooks={"request": [self.requests]})),
            orchestrator=self.engine,
            private_key=load_private_key_file(KEY_PATH),
        )
        self.runtime.clock = lambda: self.now  # timers driven by hand: "due" or "not due" on purpose

    async def seed(self, n: int) -> None:
        runtime = self.runtime
        await runtime.platform.register(manager_id=runtime.manager_id, name="bench", public_key=runtime.public_key)
        with EmulatorAdmin(self.emulator.url, TOKEN, timeout=60) as admin:
            for i in range(n):
                admin.add_connector(
                    f"Bench {i:05d}",
                    "opencti/connector-bench:6.8.3",
                    config={"BENCH_INTERVAL": str(i)},
                    secrets={"BENCH_API_KEY": f"k{i}"},
                    start=i % 4 != 0,
                )

    async def measure(self, *, advance: float) -> PassFigures:
        self.now += advance
        return await measure(self.runtime, lambda: self.engine.calls, self.requests)

    async def close(self) -> None:
        await self.runtime.close()
        self.emulator.stop()


async def steady(n: int) -> PassFigures:
    bench = Bench()
    try:
        await bench.seed(n)
        for _ in range(5):  # converge, with every report done
            if (await bench.measure(advance=100)).actions == 0:
                break
        return await bench.measure(advance=1)  # nothing due
    finally:
        await bench.close()


async def cold(n: int, latency: float, concurrency: int) -> PassFigures:
    bench = Bench(latency=latency, concurrency=concurrency)
    try:
        await bench.seed(n)
        return await bench.measure(advance=100)
    finally:
        await bench.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 5000])
    parser.add_argument("--cold", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    configure_logging(LoggerSettings(level="error", console=False))
    print("steady pass (emulator over HTTP, simulated engine, nothing due)")
    print(f"{'N':>10} {HEADER}")
    for n in args.sizes:
        print(asyncio.run(steady(n)).row(n))
    print(f"\ncold start: N = {args.cold}, {args.latency_ms:g} ms per engine call")
    print(f"{'':>10} {HEADER}")
    sequential = asyncio.run(cold(args.cold, args.latency_ms / 1000, concurrency=1))
    ours = asyncio.run(cold(args.cold, args.latency_ms / 1000, concurrency=16))
    print(sequential.row("sequential"))
    print(ours.row("ours (16)"))
    print(f"{'speed-up':>10} {sequential.wall / ours.wall:.1f}x")


if __name__ == "__main__":
    main()
