"""Telemetry: Prometheus metrics, alerts (log event + webhook) and the audit trail.

The reconciler reports facts here (an action done, a health report, a failed decryption …);
this module decides what becomes a metric, an alert (once per problem, not once per pass) and
an audit line. Nothing here ever receives a secret value: only names, ids, hashes and outcomes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import logging.handlers
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from xtm_composer.config.settings import AlertSettings, AuditSettings
from xtm_composer.observability import get_logger

log = get_logger("xtm_composer.alerts")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.pass_duration = Histogram(
            "xtm_composer_pass_duration_seconds",
            "Duration of a reconcile pass",
            ["platform"],
            registry=self.registry,
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
        )
        self.actions = Counter(
            "xtm_composer_actions_total", "Actions carried out", ["platform", "kind", "outcome"], registry=self.registry
        )
        self.connectors = Gauge(
            "xtm_composer_connectors", "Connectors by state", ["platform", "state"], registry=self.registry
        )
        self.reboot_loops = Gauge(
            "xtm_composer_reboot_loops", "Connectors in a reboot loop", ["platform"], registry=self.registry
        )
        self.auth_failures = Counter(
            "xtm_composer_platform_auth_failures_total",
            "Platform authentication failures",
            ["platform"],
            registry=self.registry,
        )
        self.decryption_failures = Counter(
            "xtm_composer_decryption_failures_total",
            "Secret values that could not be decrypted",
            ["platform"],
            registry=self.registry,
        )
        self.last_success = Gauge(
            "xtm_composer_last_successful_pass_timestamp_seconds",
            "Time of the last successful pass",
            ["platform"],
            registry=self.registry,
        )


class AuditLog:
    """Append-only JSON lines, rotated by size. Fixed fields only: no free-form values."""

    def __init__(self, settings: AuditSettings) -> None:
        self._logger: logging.Logger | None = None
        if settings.path is None:
            return
        settings.path.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.handlers.RotatingFileHandler(
            settings.path, maxBytes=settings.max_bytes, backupCount=settings.backups, encoding="utf-8"
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
        self._logger = logging.getLogger(f"xtm_composer.audit.{id(self)}")
        self._logger.propagate = False  # never mixed into the application log
        self._logger.setLevel(logging.INFO)
        self._logger.addHandler(handler)

    def write(self, **record: Any) -> None:
        if self._logger is None:
            return
        line = {"time": datetime.now(UTC).isoformat().replace("+00:00", "Z"), **record}
        self._logger.info(json.dumps(line, ensure_ascii=False, sort_keys=True))

    def close(self) -> None:
        if self._logger is not None:
            for handler in list(self._logger.handlers):
                handler.close()
                self._logger.removeHandler(handler)


@dataclass
class Alerter:
    """One alert per problem: raised when it starts, forgotten when it clears (so it can fire again)."""

    settings: AlertSettings
    manager_id: str
    active: set[tuple[str, str]] = field(default_factory=set)
    sent: list[dict[str, Any]] = field(default_factory=list)  # for `status` and tests
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def raise_alert(self, kind: str, key: str, message: str, **context: Any) -> bool:
        if (kind, key) in self.active:
            return False
        self.active.add((kind, key))
        payload = {
            "alert": kind,
            "manager_id": self.manager_id,
            "message": message,
            "time": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            **context,
        }
        log.warning("alert", **{k: v for k, v in payload.items() if k != "time"})
        self.sent.append(payload)
        if self.settings.webhook_url:
            try:
                task = asyncio.get_running_loop().create_task(self._post(payload), name=f"alert-{kind}")
            except RuntimeError:  # no loop (a synchronous caller): the log event is the alert
                return True
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return True

    def clear(self, kind: str, key: str) -> None:
        self.active.discard((kind, key))

    async def _post(self, payload: dict[str, Any]) -> None:
        """POST the alert, retried with backoff, in the background: it never blocks a loop."""
        assert self.settings.webhook_url is not None
        delay = self.settings.webhook_retry_delay
        async with httpx.AsyncClient(timeout=self.settings.webhook_timeout) as client:
            for attempt in range(1, self.settings.webhook_attempts + 1):
                try:
                    response = await client.post(self.settings.webhook_url, json=payload)
                    if response.status_code < 300:
                        return
                    problem = f"HTTP {response.status_code}"
                except httpx.HTTPError as exc:
                    problem = type(exc).__name__
                if attempt < self.settings.webhook_attempts:
                    await asyncio.sleep(delay)
                    delay *= 2
        log.error("alert webhook failed", alert=payload["alert"], error=problem, attempts=attempt)

    async def drain(self, timeout: float = 10) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)


@dataclass
class LoopHealth:
    """Heartbeats of the named loops, and whether each platform is registered and its engine reachable."""

    beats: dict[str, float] = field(default_factory=dict)
    periods: dict[str, float] = field(default_factory=dict)
    registered: dict[str, bool] = field(default_factory=dict)
    engine_ok: dict[str, bool] = field(default_factory=dict)
    clock: Callable[[], float] = time.monotonic

    def beat(self, loop: str, *, period: float) -> None:
        self.beats[loop] = self.clock()
        self.periods[loop] = period

    def stale_loops(self, *, grace: float) -> list[str]:
        now = self.clock()
        return [name for name, at in self.beats.items() if now - at > max(3 * self.periods[name], grace)]

    def ready(self) -> bool:
        return (
            bool(self.registered)
            and all(self.registered.values())
            and all(self.engine_ok.values())
            and bool(self.engine_ok)
        )


class Telemetry:
    """Everything the daemon reports to; one per process, shared by the platforms' loops."""

    def __init__(self, *, manager_id: str, alerts: AlertSettings | None = None, audit: AuditSettings | None = None):
        self.manager_id = manager_id
        self.metrics = Metrics()
        self.alerter = Alerter(alerts or AlertSettings(), manager_id)
        self.audit = AuditLog(audit or AuditSettings())
        self.health = LoopHealth()
        self.alert_settings = alerts or AlertSettings()

    def close(self) -> None:
        self.audit.close()


class NullTelemetry(Telemetry):
    """Metrics kept in a private registry, no webhook, no audit file: for tests and tools."""

    def __init__(self, manager_id: str = "") -> None:
        super().__init__(manager_id=manager_id)
