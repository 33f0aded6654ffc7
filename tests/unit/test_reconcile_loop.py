"""The reconcile loop says once that passes are skipped, and once that they resumed."""

from __future__ import annotations

import asyncio

from structlog.testing import capture_logs

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.crypto import load_private_key_file
from xtm_composer.daemon import PlatformRuntime
from xtm_composer.domain import PlatformKind
from xtm_composer.errors import PlatformUnavailable
from xtm_composer.testing.simulated import SimulatedOrchestrator, SimulatedPlatform

from ..paths import SHARED_VECTORS


class FlakyPlatform(SimulatedPlatform):
    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def list_connectors(self, *, manager_id: str):
        if self.down:
            raise PlatformUnavailable("platform answered HTTP 502")
        return await super().list_connectors(manager_id=manager_id)


async def test_skipped_passes_are_logged_once_and_the_recovery_once():
    platform = FlakyPlatform()
    runtime = PlatformRuntime(
        kind=PlatformKind.OPENCTI,
        platform=platform,
        orchestrator=SimulatedOrchestrator(),
        settings=PlatformSettings(enable=True, url="http://sim", token="t"),
        manager_id="m",
        manager_name="m",
        private_key=load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem"),
        execute_schedule=0.05,
        ping_alive_schedule=60,
    )
    runtime.registered.set()
    stop = asyncio.Event()
    with capture_logs() as logs:
        loop = asyncio.create_task(runtime.reconcile_loop(stop))
        await asyncio.sleep(0.5)
        platform.down = False
        await asyncio.sleep(0.3)
        stop.set()
        await loop
    events = [e["event"] for e in logs if e["log_level"] in ("warning", "info", "error")]
    assert events.count("reconcile skipped: platform unavailable; nothing is removed until it recovers") == 1
    assert events.count("reconcile resumed") == 1
