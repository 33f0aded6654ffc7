"""Benchmark: reconcile passes at scale, against the emulator over HTTP and a simulated engine
with a fixed latency per call.

  steady pass   N = 100, 1000, 5000 connectors, everything converged, no report due:
                engine calls, platform calls, decryptions, wall and CPU time of the composer
  cold start    N = 200 connectors to deploy with 20 ms per engine call: sequential
                (one action at a time, as the Rust composer does) vs ours (bounded concurrency)

The emulator runs in its own process, so the CPU column is the composer's alone. Real-engine
figures for small N come from bench/steady_pass.py.

    python bench/reconcile_scale.py [--sizes 100 1000 5000] [--cold 200] [--latency-ms 20]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

from xtm_composer.config.settings import DaemonSettings, LoggerSettings, ManagerSettings, PlatformSettings, Settings
from xtm_composer.crypto import load_private_key_file
from xtm_composer.daemon import PlatformRuntime, build_runtime
from xtm_composer.domain import PlatformKind
from xtm_composer.emulator.client import EmulatorAdmin
from xtm_composer.observability import configure_logging
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient
from xtm_composer.testing.simulated import SimulatedOrchestrator

TOKEN = "bench"
KEY_PATH = "../shared/vectors/test-key.pkcs8.pem"


@dataclass
class PassFigures:
    wall: float
    cpu: float
    engine_calls: int
    platform_calls: int
    decryptions: int
    actions: int


class Emulator:
    def __init__(self) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "xtm_composer", "emulator", "serve", "--port", str(self.port), "--token", TOKEN],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(200):
            try:
                httpx.get(f"{self.url}/health", timeout=1)
                return
            except httpx.HTTPError:
                time.sleep(0.05)
        raise SystemExit("the emulator did not start")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def runtime_for(url: str, engine: SimulatedOrchestrator, *, concurrency: int, counter: list[int]) -> PlatformRuntime:
    settings = Settings(
        manager=ManagerSettings(id="bench-manager", max_concurrent_actions=concurrency),
        opencti=PlatformSettings(
            enable=True, url=url, token=TOKEN, request_timeout=120, daemon=DaemonSettings(selector="docker")
        ),
    )

    async def count(_request: httpx.Request) -> None:
        counter[0] += 1

    runtime = build_runtime(
        PlatformKind.OPENCTI,
        settings=settings,
        platform=OpenCTIClient(build_async_client(settings.opencti, event_hooks={"request": [count]})),
        orchestrator=engine,
        private_key=load_private_key_file(__import__("pathlib").Path(KEY_PATH)),
    )
    runtime.clock = lambda: clock[0]
    return runtime


clock = [0.0]


async def measure(runtime: PlatformRuntime, engine: SimulatedOrchestrator, counter: list[int]) -> PassFigures:
    engine_before, platform_before = engine.calls, counter[0]
    wall, cpu = time.perf_counter(), time.process_time()
    result = await runtime.reconcile_once()
    return PassFigures(
        wall=time.perf_counter() - wall,
        cpu=time.process_time() - cpu,
        engine_calls=engine.calls - engine_before,
        platform_calls=counter[0] - platform_before,
        decryptions=result.report.decryptions,
        actions=len(result.report.outcomes),
    )


def seed(url: str, n: int) -> None:
    with EmulatorAdmin(url, TOKEN, timeout=60) as admin:
        for i in range(n):
            admin.add_connector(
                f"Bench {i:05d}",
                "opencti/connector-bench:6.8.3",
                config={"BENCH_INTERVAL": str(i)},
                secrets={"BENCH_API_KEY": f"k{i}"},
                start=i % 4 != 0,
            )


async def register(runtime: PlatformRuntime) -> None:
    await runtime.platform.register(manager_id=runtime.manager_id, name="bench", public_key=runtime.public_key)


async def steady(n: int) -> PassFigures:
    emulator = Emulator()
    try:
        counter = [0]
        engine = SimulatedOrchestrator()
        runtime = runtime_for(emulator.url, engine, concurrency=16, counter=counter)
        await register(runtime)
        seed(emulator.url, n)
        for _ in range(5):  # converge, with every report done
            clock[0] += 100
            if (await measure(runtime, engine, counter)).actions == 0:
                break
        clock[0] += 1  # nothing due
        figures = await measure(runtime, engine, counter)
        await runtime.close()
        return figures
    finally:
        emulator.stop()


async def cold(n: int, latency: float, concurrency: int) -> PassFigures:
    emulator = Emulator()
    try:
        counter = [0]
        engine = SimulatedOrchestrator(latency=latency)
        runtime = runtime_for(emulator.url, engine, concurrency=concurrency, counter=counter)
        await register(runtime)
        seed(emulator.url, n)
        clock[0] += 100
        figures = await measure(runtime, engine, counter)
        await runtime.close()
        return figures
    finally:
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="*", default=[100, 1000, 5000])
    parser.add_argument("--cold", type=int, default=200)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    configure_logging(LoggerSettings(level="error", console=False))
    print("steady pass (emulator over HTTP, simulated engine, nothing due)")
    print(f"{'N':>6} {'wall s':>8} {'cpu s':>7} {'engine':>7} {'platform':>9} {'decrypt':>8} {'actions':>8}")
    for n in args.sizes:
        f = asyncio.run(steady(n))
        print(
            f"{n:>6} {f.wall:8.3f} {f.cpu:7.3f} {f.engine_calls:7d} {f.platform_calls:9d} {f.decryptions:8d} "
            f"{f.actions:8d}"
        )
    print(f"\ncold start: N = {args.cold}, {args.latency_ms:g} ms per engine call")
    sequential = asyncio.run(cold(args.cold, args.latency_ms / 1000, concurrency=1))
    ours = asyncio.run(cold(args.cold, args.latency_ms / 1000, concurrency=16))
    for label, f in (("sequential", sequential), ("ours (16)", ours)):
        print(
            f"{label:>12}: {f.wall:7.2f} s wall, {f.cpu:6.2f} s cpu, {f.engine_calls} engine calls, "
            f"{f.platform_calls} platform calls, {f.decryptions} decryptions"
        )
    print(f"{'speed-up':>12}: {sequential.wall / ours.wall:.1f}x")


if __name__ == "__main__":
    main()
