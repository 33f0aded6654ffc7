"""`xtm-composer demo`: the whole job on the local Docker Engine, watched in a live table.

It starts the platform emulator seeded with a few realistic connectors (some with secrets),
runs the composer against it with a throw-away key, plays a short story (stop one connector,
edit another's configuration, start the stopped one, add a crashing one) and, however it ends,
removes every container it created.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from xtm_composer.config.settings import (
    DaemonSettings,
    LoggerSettings,
    ManagerSettings,
    PlatformSettings,
    Settings,
)
from xtm_composer.crypto import generate_private_key
from xtm_composer.daemon import PlatformRuntime, build_runtime, run_daemon
from xtm_composer.domain import LABEL_MANAGER, PlatformKind, Workload
from xtm_composer.emulator.seed import seed_demo, seed_openaev_demo
from xtm_composer.emulator.server import EmulatorServer
from xtm_composer.emulator.state import EmulatorState
from xtm_composer.errors import ComposerError
from xtm_composer.images import DEMO_IMAGE, ensure_demo_image
from xtm_composer.observability import configure_logging
from xtm_composer.orchestrators.docker_engine import DockerOrchestrator
from xtm_composer.proxy import build_proxy_config
from xtm_composer.wiring import build_platform

DEMO_MANAGER_ID = "xtm-composer-demo"
DEMO_TOKEN = "demo-token"


class DemoUnavailable(ComposerError):
    """The demo cannot run here (no engine, no busybox …); the message says what is missing."""


@dataclass(frozen=True)
class StoryStep:
    at: float  # seconds after the start
    text: str
    act: Callable[[EmulatorState], None]


def _story() -> list[StoryStep]:
    def by_name(state: EmulatorState, name: str) -> str:
        found = state.find_connector(name)
        if found is None:
            raise LookupError(name)
        return found.id

    return [
        StoryStep(25, "admin stops 'AlienVault OTX'", lambda s: s.stop_connector(by_name(s, "AlienVault OTX"))),
        StoryStep(
            40,
            "admin edits 'MITRE ATT&CK' (MITRE_INTERVAL=1): the container is recreated with the new hash",
            lambda s: s.edit_connector(by_name(s, "MITRE ATT&CK"), config={"MITRE_INTERVAL": "1"}),
        ),
        StoryStep(
            55,
            "admin starts 'CISA Known Exploited Vulnerabilities'",
            lambda s: s.start_connector(by_name(s, "CISA Known Exploited Vulnerabilities")),
        ),
        StoryStep(
            70,
            "admin adds 'Broken Feed', which crashes at start: watch the reboot loop",
            lambda s: s.add_connector("Broken Feed", DEMO_IMAGE, config={"DEMO_CRASH": "1"}, start=True),
        ),
        StoryStep(
            100,
            "admin deletes 'Broken Feed': its container is removed",
            lambda s: s.delete_connector(by_name(s, "Broken Feed")),
        ),
    ]


def _docker_client() -> docker.DockerClient:
    try:
        client = docker.from_env(timeout=30)
        client.ping()
    except docker.errors.DockerException as exc:
        raise DemoUnavailable(
            "no Docker Engine reachable (set DOCKER_HOST, start Docker, or run ./scripts/demo as root, "
            f"which starts a private engine): {exc}"
        ) from None
    return client


def remove_demo_containers(client: docker.DockerClient) -> int:
    removed = 0
    for container in client.containers.list(all=True, filters={"label": f"{LABEL_MANAGER}={DEMO_MANAGER_ID}"}):
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
            removed += 1
    return removed


def _log_message(line: str) -> str:
    """The message of a JSON log line (what connectors print), else the line itself."""
    with contextlib.suppress(ValueError, AttributeError):
        return str(json.loads(line).get("message", line))
    return line


def _render(
    platforms: list[tuple[PlatformKind, EmulatorState]],
    workloads: dict[str, Workload],
    events: list[str],
    elapsed: float,
) -> Group:
    table = Table(title=f"xtm-composer demo: {elapsed:4.0f}s (Ctrl-C to stop)", expand=True)
    table.add_column("platform", no_wrap=True)
    table.add_column("connector", no_wrap=True, ratio=3)
    table.add_column("requested", no_wrap=True)
    table.add_column("reported", no_wrap=True)
    table.add_column("container", no_wrap=True)
    table.add_column("restarts", no_wrap=True, justify="right")
    table.add_column("loop", no_wrap=True)
    table.add_column("last log line", no_wrap=True, ratio=4)
    for kind, state in platforms:
        for connector in state.connectors():
            workload = workloads.get(connector.id)
            health = connector.health
            table.add_row(
                kind.value,
                connector.name,
                connector.requested_status,
                connector.current_status or "-",
                workload.state.value if workload else "-",
                str(health.restart_count) if health else "-",
                Text("yes", style="bold red") if health and health.is_in_reboot_loop else Text("no"),
                _log_message(connector.logs[-1]) if connector.logs else "",
            )
    lines = [Text(f"• {event}") for event in events[-6:]]
    return Group(table, *lines)


def _platform_settings(url: str) -> PlatformSettings:
    return PlatformSettings(
        enable=True, url=url, token=DEMO_TOKEN, logs_schedule=3, daemon=DaemonSettings(selector="docker")
    )


async def _run(duration: float, story: bool, with_openaev: bool, console: Console, log_file: Path) -> None:
    client = _docker_client()
    removed = remove_demo_containers(client)  # leftovers of an interrupted earlier demo
    console.print(f"Docker Engine ready{f' (removed {removed} leftover demo containers)' if removed else ''}.")
    ensure_demo_image(client)
    console.print("Generating a throw-away RSA-4096 key for this demo…")
    key = generate_private_key()
    opencti_state = EmulatorState(token=DEMO_TOKEN)
    seed_demo(opencti_state, image=DEMO_IMAGE)
    platforms: list[tuple[PlatformKind, EmulatorState]] = [(PlatformKind.OPENCTI, opencti_state)]
    if with_openaev:
        openaev_state = EmulatorState(token=DEMO_TOKEN, kind="openaev")
        seed_openaev_demo(openaev_state, image=DEMO_IMAGE)
        platforms.append((PlatformKind.OPENAEV, openaev_state))
    servers = {kind: EmulatorServer(state).start() for kind, state in platforms}
    settings = Settings(
        manager=ManagerSettings(
            id=DEMO_MANAGER_ID,
            name="xtm-composer demo",
            execute_schedule=3,
            ping_alive_schedule=10,
            health_interval=10,
        ),
        **{kind.value: _platform_settings(server.url) for kind, server in servers.items()},
    )
    configure_logging(LoggerSettings(level="info", format="json", console=False, directory=str(log_file.parent)))
    runtimes: list[PlatformRuntime] = []
    for kind, server in servers.items():
        platform_settings: PlatformSettings = getattr(settings, kind.value)
        runtimes.append(
            build_runtime(
                kind,
                settings=settings,
                platform=build_platform(
                    kind,
                    platform_settings,
                    manager_id=DEMO_MANAGER_ID,
                    proxy=build_proxy_config(platform_settings, platform=kind.value),
                ),
                orchestrator=DockerOrchestrator(),
                private_key=key,
            )
        )
        console.print(f"{kind.value} emulator on {server.url}")
    console.print(f"composer logs in {log_file}")
    observer = DockerOrchestrator()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    daemon = asyncio.create_task(run_daemon(runtimes, stop), name="demo-daemon")
    steps = _story() if story else []
    events = ["composer started: registering with the platform" + ("s" if with_openaev else "")]
    started = time.monotonic()
    try:
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            while not stop.is_set() and not daemon.done():
                elapsed = time.monotonic() - started
                while steps and steps[0].at <= elapsed:
                    step = steps.pop(0)
                    try:
                        step.act(opencti_state)
                        events.append(f"{elapsed:4.0f}s {step.text}")
                    except Exception as exc:  # a story step must never break the demo
                        events.append(f"{elapsed:4.0f}s {step.text}: skipped ({exc})")
                try:
                    workloads = {
                        w.connector_id: w
                        for w in await observer.list_workloads(manager_id=DEMO_MANAGER_ID)
                        if w.connector_id
                    }
                except ComposerError:
                    workloads = {}
                live.update(_render(platforms, workloads, events, elapsed))
                if duration and elapsed >= duration:
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=1.0)
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await daemon
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        for server in servers.values():
            server.stop()
        removed = remove_demo_containers(client)
        client.close()
        console.print()
        console.print(f"Demo over: removed {removed} demo containers, emulators stopped.")


def run_demo(*, duration: float, story: bool, with_openaev: bool = True) -> None:
    console = Console()
    # Kept after the demo so its logs can be read.
    log_file = Path(tempfile.mkdtemp(prefix="xtm-composer-demo-")) / "xtm-composer.log"
    asyncio.run(_run(duration, story, with_openaev, console, log_file))
