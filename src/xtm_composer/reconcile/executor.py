"""The executor: carries out a plan against a platform and an orchestrator.

Phases keep the order safe without serialising connectors: removals first (they may free a
name another connector needs), then workload changes, then reports. Inside a phase actions
run concurrently under a semaphore. Each action is isolated: its failure is logged with the
connector's id and name, counted in that connector's memory (backoff), and never stops the
others. Secrets are decrypted only here, only for a deploy or recreate, and dropped after.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeVar

import structlog

from xtm_composer.config.settings import DebugSettings
from xtm_composer.crypto import KeyRing
from xtm_composer.domain import Connector, PlatformKind, WorkloadSpec, WorkloadState
from xtm_composer.errors import ComposerError, ConnectorGone, DecryptionError, PlatformAuthError, WorkloadConflict
from xtm_composer.observability import get_logger
from xtm_composer.orchestrators.base import Orchestrator
from xtm_composer.orchestrators.health import health_from_state
from xtm_composer.orchestrators.specs import build_spec, redacted_env
from xtm_composer.platforms.base import Platform
from xtm_composer.proxy import ProxyConfig
from xtm_composer.reconcile.actions import (
    Action,
    Collision,
    Deploy,
    Recreate,
    Remove,
    ReportHealth,
    ReportLogs,
    ReportStatus,
    Start,
    Stop,
    connector_id_of,
    describe,
)
from xtm_composer.reconcile.memory import ConnectorMemory
from xtm_composer.reconcile.planner import Plan
from xtm_composer.telemetry import NullTelemetry, Telemetry

log = get_logger(__name__)
T = TypeVar("T")
NOTE_PREFIX = "[xtm-composer]"
MAX_LOGGED_NAME = 120  # a connector name is repeated on every line of its actions

_REPORTS = (ReportStatus, ReportHealth, ReportLogs)
_AUDITED = (Deploy, Recreate, Start, Stop, Remove, ReportStatus)
_PHASES: tuple[tuple[type, ...], ...] = (
    (Collision,),
    (Remove,),
    (Deploy, Recreate, Start, Stop),
    (ReportStatus, ReportHealth, ReportLogs),
)


@dataclass(slots=True)
class ActionOutcome:
    action: Action
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(slots=True)
class PassReport:
    outcomes: list[ActionOutcome] = field(default_factory=list)
    decryptions: int = 0
    # Connectors whose workload action failed: their reports are skipped this pass.
    failed_connectors: set[str] = field(default_factory=set)
    # (connector id, line) the admin should see on the platform: why a workload could not be changed.
    notes: list[tuple[str, str]] = field(default_factory=list)

    @property
    def failures(self) -> list[ActionOutcome]:
        return [o for o in self.outcomes if not o.ok]


class Executor:
    def __init__(
        self,
        *,
        platform: Platform,
        orchestrator: Orchestrator,
        keys: KeyRing,
        manager_id: str,
        platform_kind: PlatformKind,
        memory: MutableMapping[str, ConnectorMemory],
        clock: Callable[[], float],
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_concurrency: int = 4,
        logs_tail: int = 100,
        proxy: ProxyConfig | None = None,
        debug: DebugSettings | None = None,
        platform_env: tuple[tuple[str, str], ...] = (),
        telemetry: Telemetry | None = None,
    ) -> None:
        self._platform = platform
        self._orchestrator = orchestrator
        self._keys = keys
        self._manager_id = manager_id
        self._platform_kind = platform_kind
        self._memory = memory
        self._clock = clock
        self._wall_clock = wall_clock
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._logs_tail = logs_tail
        self._proxy = proxy or ProxyConfig()
        self._debug = debug or DebugSettings()
        self._platform_env = platform_env
        self._telemetry = telemetry or NullTelemetry(manager_id)

    async def run(self, plan: Plan) -> PassReport:
        report = PassReport()
        for phase in _PHASES:
            batch = [
                a
                for a in plan.actions
                if isinstance(a, phase) and not (isinstance(a, _REPORTS) and a.connector.id in report.failed_connectors)
            ]
            if batch:
                report.outcomes.extend(await asyncio.gather(*(self._guarded(a, report) for a in batch)))
        if report.notes:
            await asyncio.gather(*(self._send_note(cid, line) for cid, line in report.notes))
        return report

    async def _send_note(self, connector_id: str, line: str) -> None:
        try:
            await self._platform.report_logs(connector_id, [line])
        except ComposerError as exc:
            log.warning("could not show the error on the platform", connector_id=connector_id, error=str(exc))

    async def _guarded(self, action: Action, report: PassReport) -> ActionOutcome:
        connector_id = connector_id_of(action)
        name = action.workload.name if isinstance(action, Remove) else action.connector.name
        name = name if len(name) <= MAX_LOGGED_NAME else name[:MAX_LOGGED_NAME] + "…"
        bound = structlog.contextvars.bound_contextvars(
            platform=self._platform_kind.value, connector_id=connector_id, connector_name=name, action=action.kind
        )
        async with self._semaphore:
            with bound:
                try:
                    await self._run_one(action, report)
                except ConnectorGone:
                    # Deleted on the platform after this pass listed it: nothing to report to.
                    log.info("report dropped: connector no longer on the platform", description=describe(action))
                    return ActionOutcome(action)
                except ComposerError as exc:
                    outcome = self._failed(action, connector_id, str(exc), report, level="error")
                    self._observe(action, outcome, exc)
                    return outcome
                except Exception as exc:  # an unexpected bug in one action must not stop the others
                    log.exception("action crashed", description=describe(action))
                    outcome = self._failed(action, connector_id, f"{type(exc).__name__}: {exc}", report, level=None)
                    self._observe(action, outcome, exc)
                    return outcome
        if connector_id is not None and not isinstance(action, Remove):
            self._memory_of(connector_id).record_success()
        outcome = ActionOutcome(action)
        self._observe(action, outcome, None)
        return outcome

    def _observe(self, action: Action, outcome: ActionOutcome, error: BaseException | None) -> None:
        """Metrics for every action; an audit line for engine actions and status reports; alerts."""
        platform = self._platform_kind.value
        telemetry = self._telemetry
        telemetry.metrics.actions.labels(platform, action.kind, "ok" if outcome.ok else "error").inc()
        connector = None if isinstance(action, Remove) else action.connector
        connector_id = connector.id if connector else action.workload.connector_id  # type: ignore[union-attr]
        if isinstance(error, DecryptionError):
            telemetry.metrics.decryption_failures.labels(platform).inc()
            telemetry.alerter.raise_alert(
                "decryption_failure",
                f"{platform}/{connector_id}",
                str(error),
                platform=platform,
                connector_id=connector_id,
                connector_name=connector.name if connector else None,
            )
        elif isinstance(action, (Deploy, Recreate)) and outcome.ok:
            telemetry.alerter.clear("decryption_failure", f"{platform}/{connector_id}")
        if isinstance(error, PlatformAuthError):
            telemetry.metrics.auth_failures.labels(platform).inc()
        if isinstance(action, _AUDITED):
            record = {
                "manager": self._manager_id,
                "platform": platform,
                "connector_id": connector_id,
                "connector_name": connector.name if connector else action.workload.name,  # type: ignore[union-attr]
                "action": action.kind,
                "outcome": "ok" if outcome.ok else "error",
                "hash": connector.contract_hash if connector else action.workload.config_hash,  # type: ignore[union-attr]
            }
            if isinstance(action, ReportStatus):
                record["status"] = action.status.value
            if isinstance(action, Stop):
                record["reason"] = action.reason
            if isinstance(action, Remove):
                record["reason"] = action.reason
            if outcome.error:
                record["error"] = outcome.error
            telemetry.audit.write(**record)

    def _failed(
        self, action: Action, connector_id: str | None, error: str, report: PassReport, *, level: str | None
    ) -> ActionOutcome:
        if level:
            log.error("action failed", description=describe(action), error=error)
        if connector_id is not None and not isinstance(action, _REPORTS):
            report.failed_connectors.add(connector_id)
            mem = self._memory_of(connector_id)
            if not isinstance(action, Remove) and mem.noted_error != error:
                # Once per distinct error: the platform shows it in the connector's logs.
                mem.noted_error = error
                report.notes.append((connector_id, f"{NOTE_PREFIX} {describe(action)} failed: {error}"))
        if connector_id is not None:
            connector = None if isinstance(action, Remove) else action.connector
            failed_for = (connector.contract_hash, connector.requested_status.value) if connector else None
            self._memory_of(connector_id).record_failure(error, now=self._clock(), failed_for=failed_for)
        return ActionOutcome(action, error=error)

    def _memory_of(self, connector_id: str) -> ConnectorMemory:
        return self._memory.setdefault(connector_id, ConnectorMemory())

    async def _run_one(self, action: Action, report: PassReport) -> None:
        match action:
            case Collision(name=name, holder=holder):
                raise WorkloadConflict(
                    f"name collision: {name} is already the workload of connector {holder.connector_id}; "
                    "left untouched (rename one of the connectors)"
                )
            case Remove(workload=workload, reason=reason):
                log.info("removing workload", workload=workload.name, reason=reason)
                await self._orchestrator.remove(workload)
            case Deploy(connector=connector, name=name, start=start):
                spec = await self._with_consequence(self._spec(connector, name, report), "not deployed")
                try:
                    await self._orchestrator.deploy(spec, start=start)
                except WorkloadConflict as exc:
                    raise WorkloadConflict(
                        f"name collision: {name} is already used by a workload that is not this connector's; "
                        f"left untouched ({exc})"
                    ) from None
                log.info("workload deployed", workload=name, started=start)
                self._memory_of(connector.id).forget_workload()
                if start:
                    self._memory_of(connector.id).last_start_at = self._clock()
            case Recreate(connector=connector, name=name, old=old, start=start):
                # Decrypt and pull first: a bad secret or an image that cannot be pulled keeps the old one.
                spec = await self._with_consequence(
                    self._spec(connector, name, report), "the running workload keeps its previous configuration"
                )
                await self._with_consequence(
                    self._orchestrator.prepare(spec), "the running workload keeps its previous configuration"
                )
                await self._orchestrator.remove(old)
                await self._orchestrator.deploy(spec, start=start)
                log.info("workload recreated", workload=name, started=start)
                self._memory_of(connector.id).forget_workload()
                if start:
                    self._memory_of(connector.id).last_start_at = self._clock()
            case Start(connector=connector, workload=workload):
                await self._orchestrator.start(workload)
                log.info("workload started", workload=workload.name)
                self._memory_of(connector.id).last_start_at = self._clock()
                if workload.state in (WorkloadState.EXITED, WorkloadState.DEAD):
                    # It ran before: this start is a restart, which the engine's own count misses.
                    self._memory_of(connector.id).composer_restarts += 1
            case Stop(connector=connector, workload=workload, reason=reason):
                await self._orchestrator.stop(workload)
                if reason == "requested":
                    log.info("workload stopped", workload=workload.name)
                else:
                    mem = self._memory_of(connector.id)
                    mem.held_for_loop, mem.held_hash = True, connector.contract_hash
                    log.warning(
                        "connector stopped: stuck in a reboot loop; start it again from the platform once fixed",
                        workload=workload.name,
                        reason=reason,
                    )
            case ReportStatus(connector=connector, status=status):
                await self._platform.report_status(connector.id, status)
                log.info("status reported", status=status.value)
            case ReportHealth(connector=connector, workload=workload):
                mem = self._memory_of(connector.id)
                engine = await self._orchestrator.health(workload)
                restarts = engine.restart_count + mem.composer_restarts
                health = health_from_state(
                    restart_count=restarts, started_at=engine.started_at, now=self._wall_clock(), reason=engine.reason
                )
                await self._platform.report_health(connector.id, health)
                mem.last_health_at = self._clock()
                mem.health_wanted = False
                mem.last_health = (
                    restarts,
                    health.started_at.isoformat() if health.started_at else None,
                    health.is_in_reboot_loop,
                )
                loop_key = f"{self._platform_kind.value}/{connector.id}"
                if health.is_in_reboot_loop:
                    if mem.loop_since is None:
                        mem.loop_since = self._clock()
                        log.warning("connector in a reboot loop", restart_count=restarts)
                    self._telemetry.alerter.raise_alert(
                        "reboot_loop",
                        loop_key,
                        f"{connector.name} restarted {restarts} times and is up < 5 min",
                        platform=self._platform_kind.value,
                        connector_id=connector.id,
                        connector_name=connector.name,
                        restart_count=restarts,
                    )
                else:
                    mem.loop_since = None
                    self._telemetry.alerter.clear("reboot_loop", loop_key)
            case ReportLogs(connector=connector, workload=workload):
                lines = await self._orchestrator.logs(workload, tail=self._logs_tail)
                mem = self._memory_of(connector.id)
                digest = hash(tuple(lines))
                if digest != mem.last_logs_digest:  # unchanged logs are not sent again
                    await self._platform.report_logs(connector.id, lines)
                    mem.last_logs_digest = digest
                mem.last_logs_at = self._clock()

    @staticmethod
    async def _with_consequence(step: Awaitable[T], consequence: str) -> T:
        """Say what a failure means for the connector, in the error the admin will read."""
        try:
            return await step
        except ComposerError as exc:
            raise type(exc)(f"{exc}; {consequence}") from None

    async def _spec(self, connector: Connector, name: str, report: PassReport) -> WorkloadSpec:
        # RSA-4096 decryption costs ~2 ms of CPU per value and releases the GIL: off the event loop.
        entries = await asyncio.to_thread(self._decrypted_entries, connector)
        report.decryptions += sum(1 for entry in connector.config if entry.encrypted)
        spec = build_spec(
            connector,
            name=name,
            env_entries=entries,
            manager_id=self._manager_id,
            platform=self._platform_kind,
            base_env=(*self._platform_env, *self._proxy.workload_env),
            files=self._proxy.workload_files(),
        )
        if self._debug.show_env_vars:
            sensitive = {e.key for e in connector.config if e.encrypted}
            log.info(
                "workload environment",
                workload=name,
                env=redacted_env(spec.env, sensitive, show_sensitive=self._debug.show_sensitive_env_vars),
            )
        return spec

    def _decrypted_entries(self, connector: Connector) -> list[tuple[str, str]]:
        entries: list[tuple[str, str]] = []
        for entry in connector.config:
            if not entry.encrypted:
                entries.append((entry.key, entry.value))
                continue
            try:
                entries.append((entry.key, self._keys.decrypt(entry.value)))
            except DecryptionError as exc:
                raise DecryptionError(
                    f"cannot decrypt configuration key {entry.key} of connector {connector.name!r} "
                    f"({connector.id}) with the composer's key(s): {exc}"
                ) from None
        return entries
