"""One connector's whole life driven through the real reconcile loop (emulated platform, real engine).

Shared by the Swarm and Portainer tests: each gives a way to read what its engine runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from xtm_composer.config.settings import DaemonSettings, ManagerSettings, PlatformSettings, Settings
from xtm_composer.crypto import load_private_key_file
from xtm_composer.daemon import PlatformRuntime, build_runtime
from xtm_composer.domain import PlatformKind
from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState
from xtm_composer.orchestrators.base import Orchestrator
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient

from ..paths import SHARED_VECTORS
from .helpers import wait_for

TOKEN = "orchestrator-token-5e2a"


@dataclass(frozen=True)
class Observed:
    ident: str  # the engine's id of the workload
    running: bool
    env: dict[str, str]


# What the engine runs for a connector id: None when it has no workload.
Observer = Callable[[str], Awaitable[Observed | None]]


def make_runtime(url: str, manager_id: str, orchestrator: Orchestrator) -> PlatformRuntime:
    opencti = PlatformSettings(enable=True, url=url, token=TOKEN, logs_schedule=1, daemon=DaemonSettings())
    settings = Settings(manager=ManagerSettings(id=manager_id, execute_schedule=0.5), opencti=opencti)
    return build_runtime(
        PlatformKind.OPENCTI,
        settings=settings,
        platform=OpenCTIClient(build_async_client(opencti)),
        orchestrator=orchestrator,
        private_key=load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem"),
    )


async def run_connector_life(orchestrator: Orchestrator, *, manager_id: str, image: str, observe: Observer) -> None:
    """Deploy started → config change → change to an image that cannot be pulled (the running one is
    kept) → stop → start → deleted on the platform (orphan removed)."""
    state = EmulatorState(token=TOKEN)
    with EmulatorServer(state) as server:
        runtime = make_runtime(server.url, manager_id, orchestrator)
        await runtime.platform.register(manager_id=manager_id, name="t", public_key=runtime.public_key)
        connector = state.add_connector(
            f"Life {manager_id}", image, config={"LEVEL": "one", "DEMO_INTERVAL": "1"}, start=True
        )

        async def converged(check: Callable[[Observed | None], bool]) -> bool:
            await runtime.reconcile_once()
            return check(await observe(connector.id))

        try:
            assert await wait_for(lambda: converged(lambda o: o is not None and o.running and o.env["LEVEL"] == "one"))
            assert state.connector(connector.id).current_status == "started"

            state.edit_connector(connector.id, config={"LEVEL": "two"})
            assert await wait_for(lambda: converged(lambda o: o is not None and o.running and o.env["LEVEL"] == "two"))

            before = await observe(connector.id)
            state.edit_connector(connector.id, image="registry.invalid/nothing/here:1")
            for _ in range(2):
                result = await runtime.reconcile_once()
                assert any("registry.invalid/nothing/here:1" in (o.error or "") for o in result.report.outcomes)
                assert await observe(connector.id) == before
            state.edit_connector(connector.id, image=image)  # back to the running image: nothing to redo
            await runtime.reconcile_once()
            assert await observe(connector.id) == before

            state.stop_connector(connector.id)
            assert await wait_for(lambda: converged(lambda o: o is not None and not o.running))
            assert state.connector(connector.id).current_status == "stopped"

            state.start_connector(connector.id)
            assert await wait_for(lambda: converged(lambda o: o is not None and o.running and o.env["LEVEL"] == "two"))
            assert await wait_for(lambda: converged(lambda o: bool(state.connector(connector.id).logs)))

            state.delete_connector(connector.id)
            assert await wait_for(lambda: converged(lambda o: o is None))
        finally:
            await runtime.close()
