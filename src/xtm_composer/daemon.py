"""The daemon: per platform, an alive loop (register, ping) and a reconcile loop.

One stop event drives shutdown: SIGTERM/SIGINT set it, the loops leave their waits, an
in-flight pass finishes its actions (bounded by a timeout), clients are closed. Failures to
reach the platform or the engine skip a pass and are retried with backoff; they never remove
anything and never spin.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey

from xtm_composer.config.settings import DebugSettings, MonitoringSettings, PlatformSettings, Settings
from xtm_composer.crypto import KeyRing
from xtm_composer.domain import ConnectorList, PlatformKind
from xtm_composer.errors import (
    ComposerError,
    ManagerUnknown,
    OrchestratorError,
    PlatformAuthError,
    PlatformError,
    PlatformRejected,
    PlatformUnsupported,
)
from xtm_composer.keys import KeySource
from xtm_composer.monitor import MonitorServer
from xtm_composer.observability import get_logger
from xtm_composer.orchestrators.base import Orchestrator
from xtm_composer.platforms.base import Platform
from xtm_composer.proxy import ProxyConfig, build_proxy_config
from xtm_composer.reconcile.actions import Remove
from xtm_composer.reconcile.executor import Executor, PassReport
from xtm_composer.reconcile.memory import ConnectorMemory
from xtm_composer.reconcile.planner import Plan, PlanContext, plan
from xtm_composer.status_file import write_status
from xtm_composer.telemetry import NullTelemetry, Telemetry

log = get_logger(__name__)

ALIVE_BACKOFF_START = 1.0
ALIVE_BACKOFF_MAX = 60.0
SHUTDOWN_GRACE_SECONDS = 6.0  # an in-flight pass may finish; all under `docker stop`'s 10 s
ENGINE_THREAD_PREFIX = "engine"
REREGISTRATION_REMOVAL_HOLD_SECONDS = 60.0


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Wait `seconds` unless stopped first; returns True when the stop event is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=max(0.0, seconds))
    return stop.is_set()


@dataclass
class PassResult:
    plan: Plan
    report: PassReport
    duration: float


@dataclass
class PlatformRuntime:
    """Everything one platform's loops share: clients, settings and per-connector memory."""

    kind: PlatformKind
    platform: Platform
    orchestrator: Orchestrator
    settings: PlatformSettings
    manager_id: str
    manager_name: str
    # The key ring (current + previous keys); an RSAPrivateKey is accepted and wrapped.
    private_key: RSAPrivateKey | KeyRing
    execute_schedule: float
    ping_alive_schedule: float
    health_interval: float = 30.0
    max_concurrency: int = 4
    logs_tail: int = 100
    clock: Callable[[], float] = time.monotonic
    proxy: ProxyConfig = field(default_factory=ProxyConfig)
    debug: DebugSettings = field(default_factory=DebugSettings)
    reboot_loop_stop_after: float | None = None
    max_removals: int = 5
    max_removals_fraction: float = 0.2
    memory: dict[str, ConnectorMemory] = field(default_factory=dict)
    pending_orphans: frozenset[str] = frozenset()
    # Set by any platform failure: the next pass first checks the platform still knows us.
    needs_confirmation: bool = False
    # After registering again with a platform that had forgotten us, no orphan is removed until then.
    removals_held_until: float = 0.0
    status_file: Path | None = None
    # Env every workload of this platform gets unless its configuration says otherwise.
    platform_env: tuple[tuple[str, str], ...] = ()
    registered: asyncio.Event = field(default_factory=asyncio.Event)
    platform_version: str | None = None
    last_pass: PassResult | None = None

    # When set, keys come from here and are re-read after a rotation (a new key is registered).
    key_source: KeySource | None = None
    telemetry: Telemetry = field(default_factory=NullTelemetry)

    def __post_init__(self) -> None:
        self._static_keys = KeyRing.of(self.private_key)
        self._registered_generation = 0
        self._skip_reason: str | None = None
        self._skipped_passes = 0

    @property
    def keys(self) -> KeyRing:
        return self.key_source.ring() if self.key_source is not None else self._static_keys

    @property
    def _key_generation(self) -> int:
        return self.key_source.generation if self.key_source is not None else 0

    @property
    def public_key(self) -> str:
        # OpenCTI parses PKCS#1 only; OpenAEV parses SPKI only (PROTOCOL.md §2).
        if self.kind is PlatformKind.OPENCTI:
            return self.keys.public_key_pkcs1()
        return self.keys.public_key_spki()

    def plan_context(self) -> PlanContext:
        return PlanContext(
            manager_id=self.manager_id,
            platform=self.kind,
            logs_interval=self.settings.logs_schedule,
            health_interval=self.health_interval,
            reboot_loop_stop_after=self.reboot_loop_stop_after,
            max_removals=self.max_removals,
            max_removals_fraction=self.max_removals_fraction,
            hold_removals=self.clock() < self.removals_held_until,
        )

    # -- one reconcile pass -----------------------------------------------------------------
    async def observe_and_plan(self) -> tuple[ConnectorList, Plan]:
        """One platform call, one engine listing, one pure plan. Changes nothing."""
        desired = await self.platform.list_connectors(manager_id=self.manager_id)
        observed = await self.orchestrator.list_workloads(manager_id=self.manager_id)
        current_plan = plan(
            desired,
            observed,
            memory=self.memory,
            now=self.clock(),
            ctx=self.plan_context(),
            confirmed_orphans=self.pending_orphans,
        )
        return desired, current_plan

    async def reconcile_once(self) -> PassResult:
        started = time.perf_counter()
        desired, current_plan = await self.observe_and_plan()
        executor = Executor(
            platform=self.platform,
            orchestrator=self.orchestrator,
            keys=self.keys,
            manager_id=self.manager_id,
            platform_kind=self.kind,
            memory=self.memory,
            clock=self.clock,
            max_concurrency=self.max_concurrency,
            logs_tail=self.logs_tail,
            proxy=self.proxy,
            debug=self.debug,
            platform_env=self.platform_env,
            telemetry=self.telemetry,
        )
        report = await executor.run(current_plan)
        self._settle(desired, current_plan, report)
        if self.status_file is not None:
            try:
                write_status(self.status_file, manager_id=self.manager_id, memory=self.memory, now=self.clock())
            except OSError as exc:
                log.warning("cannot write the status file", path=str(self.status_file), error=str(exc))
        result = PassResult(plan=current_plan, report=report, duration=time.perf_counter() - started)
        self.last_pass = result
        self._record_pass(desired, result)
        return result

    def _record_pass(self, desired: ConnectorList, result: PassResult) -> None:
        platform = self.kind.value
        metrics = self.telemetry.metrics
        metrics.pass_duration.labels(platform).observe(result.duration)
        metrics.last_success.labels(platform).set(time.time())
        running = sum(1 for up in result.plan.expected_up.values() if up)
        metrics.connectors.labels(platform, "running").set(running)
        metrics.connectors.labels(platform, "stopped").set(len(result.plan.expected_up) - running)
        metrics.connectors.labels(platform, "unusable").set(len(desired.unparsed_ids))
        metrics.reboot_loops.labels(platform).set(sum(1 for m in self.memory.values() if m.loop_since is not None))
        self.telemetry.health.engine_ok[platform] = True

    def _platform_auth_failed(self, exc: PlatformError) -> None:
        platform = self.kind.value
        self.telemetry.metrics.auth_failures.labels(platform).inc()
        self.telemetry.alerter.raise_alert(
            "auth_failure", platform, f"{platform} refused the composer's token: {exc}", platform=platform
        )

    def _settle(self, desired: ConnectorList, current_plan: Plan, report: PassReport) -> None:
        """What this pass leaves in memory for the next one."""
        for connector in desired.connectors:
            mem = self.memory.setdefault(connector.id, ConnectorMemory())
            failed = connector.id in report.failed_connectors
            mem.was_up = (current_plan.observed_up if failed else current_plan.expected_up).get(connector.id, False)
            if mem.held_for_loop and (not connector.should_run or mem.held_hash != connector.contract_hash):
                mem.held_for_loop = False  # the admin stopped it or changed its configuration: release
        for gone in set(self.memory) - {c.id for c in desired.connectors} - desired.unparsed_ids:
            del self.memory[gone]
        if current_plan.held_removals:
            log.warning(
                "sudden drop: removals held until the next pass confirms them",
                held=len(current_plan.held_removals),
                workloads=sorted(w.name for w in current_plan.held_removals)[:20],
            )
        elif self.pending_orphans and any(isinstance(a, Remove) for a in current_plan.actions):
            log.warning("removals confirmed by a second pass", removed=len(current_plan.of_kind(Remove)))
        self.pending_orphans = current_plan.orphan_keys

    # -- loops ----------------------------------------------------------------------------
    async def alive_loop(self, stop: asyncio.Event) -> None:
        backoff = ALIVE_BACKOFF_START
        unsupported_said = False
        while not stop.is_set():
            self.telemetry.health.beat(f"{self.kind.value}-alive", period=self.ping_alive_schedule)
            try:
                if not self.registered.is_set():
                    await self._register()
                else:
                    version = await self.platform.ping(manager_id=self.manager_id)
                    if self.key_source is not None:
                        self.key_source.ring()  # reads the key files again if they changed (rotation)
                    if self.platform_version is not None and version != self.platform_version:
                        log.info("platform version changed: registering again", old=self.platform_version, new=version)
                        await self._register()
                    elif self._key_generation != self._registered_generation:
                        log.info("key rotated: registering the new public key")
                        await self._register()
                backoff = ALIVE_BACKOFF_START
                delay = self.ping_alive_schedule
                self.telemetry.health.registered[self.kind.value] = True
                self.telemetry.alerter.clear("auth_failure", self.kind.value)
            except PlatformAuthError as exc:
                log.error("platform refused the composer's token", error=str(exc))
                self._platform_auth_failed(exc)
                self.telemetry.health.registered[self.kind.value] = False
                delay, backoff = backoff, min(backoff * 2, ALIVE_BACKOFF_MAX)
            except PlatformUnsupported as exc:
                if not unsupported_said:
                    log.error("platform not supported", error=str(exc))
                    unsupported_said = True
                delay = self.ping_alive_schedule
            except ManagerUnknown as exc:
                self._platform_forgot_us(exc)
                self.needs_confirmation = True
                delay = ALIVE_BACKOFF_START  # register again now
            except PlatformRejected as exc:
                log.error("platform refused the manager", error=str(exc))
                delay, backoff = backoff, min(backoff * 2, ALIVE_BACKOFF_MAX)
            except PlatformError as exc:
                log.warning("platform unreachable", error=str(exc), retry_in=round(backoff, 1))
                self.needs_confirmation = True
                self.telemetry.health.registered[self.kind.value] = False
                delay, backoff = backoff, min(backoff * 2, ALIVE_BACKOFF_MAX)
            if await sleep_or_stop(stop, delay):
                return

    async def confirm_registration(self) -> None:
        """Ping when the platform failed since the last confirmation; register again if it forgot us."""
        if not self.needs_confirmation:
            return
        try:
            await self.platform.ping(manager_id=self.manager_id)
        except ManagerUnknown as exc:
            self._platform_forgot_us(exc)
            await self._register()
        self.needs_confirmation = False

    def _platform_forgot_us(self, exc: ManagerUnknown) -> None:
        """A reinstalled or restored platform: register again, and remove nothing for a while, since
        its list may not be complete yet."""
        self.registered.clear()
        hold = max(REREGISTRATION_REMOVAL_HOLD_SECONDS, 3 * self.execute_schedule)
        self.removals_held_until = self.clock() + hold
        log.warning(
            "platform forgot this manager: registering again; no workload is removed for a while",
            seconds=round(hold),
            error=str(exc),
        )

    async def _register(self) -> None:
        version = await self.platform.version()
        registered_version = await self.platform.register(
            manager_id=self.manager_id, name=self.manager_name, public_key=self.public_key
        )
        self.platform_version = registered_version or version
        self._registered_generation = self._key_generation
        if not self.registered.is_set():
            log.info("manager registered", platform_version=self.platform_version, manager_id=self.manager_id)
        self.registered.set()

    async def reconcile_loop(self, stop: asyncio.Event) -> None:
        while not self.registered.is_set():
            waiter = asyncio.ensure_future(self.registered.wait())
            stopper = asyncio.ensure_future(stop.wait())
            await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            stopper.cancel()
            if stop.is_set():
                return
        while not stop.is_set():
            started = time.monotonic()
            self.telemetry.health.beat(f"{self.kind.value}-reconcile", period=self.execute_schedule)
            try:
                # After any platform failure, confirm the platform still knows this manager before
                # acting on its list: a reinstalled platform answers an empty list until we register.
                await self.confirm_registration()
                # The stop event is only looked at between passes: an in-flight pass finishes.
                result = await self.reconcile_once()
                if result.report.outcomes:
                    log.debug(
                        "reconcile pass done",
                        actions=len(result.report.outcomes),
                        failures=len(result.report.failures),
                        duration=round(result.duration, 3),
                    )
            except PlatformAuthError as exc:
                self.needs_confirmation = True
                self._skipped("the platform refused the token", exc, level="error")
                self._platform_auth_failed(exc)
            except PlatformError as exc:
                self.needs_confirmation = True
                self._skipped("platform unavailable", exc)
            except OrchestratorError as exc:
                self._skipped("orchestrator unavailable", exc)
                self.telemetry.health.engine_ok[self.kind.value] = False
            except ComposerError as exc:
                self._skipped("pass failed", exc, level="error")
            else:
                if self._skip_reason is not None:
                    log.info("reconcile resumed", after=self._skip_reason, skipped_passes=self._skipped_passes)
                    self._skip_reason, self._skipped_passes = None, 0
            if await sleep_or_stop(stop, self.execute_schedule - (time.monotonic() - started)):
                return

    def _skipped(self, reason: str, exc: Exception, *, level: str = "warning") -> None:
        """Say it once when passes start being skipped (nothing is removed meanwhile), not every pass."""
        self._skipped_passes += 1
        if reason != self._skip_reason:
            self._skip_reason = reason
            getattr(log, level)(f"reconcile skipped: {reason}; nothing is removed until it recovers", error=str(exc))
        else:
            log.debug("reconcile still skipped", reason=reason, error=str(exc), passes=self._skipped_passes)

    async def close(self) -> None:
        await self.platform.aclose()
        await self.orchestrator.close()


WATCHDOG_INTERVAL_SECONDS = 5.0


async def watch_loops(telemetry: Telemetry, stop: asyncio.Event) -> None:
    """Raise one `stalled_loop` alert for a loop that stopped beating; clear it when it beats again."""
    grace = telemetry.alert_settings.stalled_after
    while not await sleep_or_stop(stop, WATCHDOG_INTERVAL_SECONDS):
        stale = set(telemetry.health.stale_loops(grace=grace))
        for loop_name in telemetry.health.beats:
            if loop_name in stale:
                telemetry.alerter.raise_alert("stalled_loop", loop_name, f"the {loop_name} loop made no progress")
            else:
                telemetry.alerter.clear("stalled_loop", loop_name)


async def run_daemon(
    runtimes: list[PlatformRuntime],
    stop: asyncio.Event,
    *,
    telemetry: Telemetry | None = None,
    monitoring: MonitoringSettings | None = None,
) -> None:
    """Run every platform's loops until `stop` is set; a crashed loop stops the process."""
    # Engine SDKs block: each concurrent action holds a worker thread, so the pool must not be
    # the bottleneck of the configured concurrency (asyncio's default is cpu count + 4).
    threads = sum(runtime.max_concurrency for runtime in runtimes) + 4
    engine_pool = ThreadPoolExecutor(threads, thread_name_prefix=ENGINE_THREAD_PREFIX)
    asyncio.get_running_loop().set_default_executor(engine_pool)
    monitor = MonitorServer(monitoring, telemetry) if telemetry and monitoring and monitoring.enable else None
    tasks: list[asyncio.Task[None]] = []
    for runtime in runtimes:
        tasks.append(asyncio.create_task(runtime.alive_loop(stop), name=f"{runtime.kind.value}-alive"))
        tasks.append(asyncio.create_task(runtime.reconcile_loop(stop), name=f"{runtime.kind.value}-reconcile"))
    helpers: list[asyncio.Task[None]] = []
    if telemetry is not None:
        helpers.append(asyncio.create_task(watch_loops(telemetry, stop), name="watchdog"))
    if monitor is not None:
        monitor.start()
        log.info("monitoring endpoint listening", port=monitor.port)
    stopper = asyncio.create_task(stop.wait(), name="stop")
    try:
        done, _ = await asyncio.wait({*tasks, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if task is not stopper and task.exception() is not None:
                stop.set()
                raise task.exception()  # type: ignore[misc]
        await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
    finally:
        stop.set()
        for task in [*tasks, *helpers, stopper]:
            task.cancel()
        if monitor is not None:
            await monitor.stop()
        if telemetry is not None:
            await telemetry.alerter.drain(timeout=2)
            telemetry.close()
        for runtime in runtimes:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(runtime.close(), timeout=2)
        # An engine call stuck in a worker thread must not hold the exit: asyncio would join the
        # pool without a timeout. Hand it a fresh pool; the caller decides about stuck threads.
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(1))
        engine_pool.shutdown(wait=False, cancel_futures=True)


def build_runtime(
    kind: PlatformKind,
    *,
    settings: Settings,
    platform: Platform,
    orchestrator: Orchestrator,
    private_key: RSAPrivateKey | KeyRing,
    proxy: ProxyConfig | None = None,
) -> PlatformRuntime:
    platform_settings: PlatformSettings = getattr(settings, kind.value)
    return PlatformRuntime(
        kind=kind,
        platform=platform,
        orchestrator=orchestrator,
        settings=platform_settings,
        manager_id=settings.manager.id,
        manager_name=settings.manager.name,
        private_key=private_key,
        execute_schedule=settings.manager.execute_schedule,
        ping_alive_schedule=settings.manager.ping_alive_schedule,
        health_interval=settings.manager.health_interval,
        max_concurrency=settings.manager.max_concurrent_actions,
        reboot_loop_stop_after=(
            settings.manager.reboot_loop_stop_after * 60 if settings.manager.reboot_loop_stop_after else None
        ),
        max_removals=settings.manager.max_removals_per_pass,
        max_removals_fraction=settings.manager.max_removals_fraction,
        logs_tail=settings.manager.logs_tail,
        proxy=proxy or build_proxy_config(platform_settings, platform=kind.value),
        # OpenCTI injects OPENCTI_URL into each contract; OpenAEV may not, so its URL is given here.
        platform_env=(("OPENAEV_URL", platform_settings.url),) if kind is PlatformKind.OPENAEV else (),
        debug=settings.manager.debug,
    )
