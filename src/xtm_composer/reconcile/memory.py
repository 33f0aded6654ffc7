"""Per-connector memory kept between passes: timers, backoff, reboot-loop hold, last error.

The planner only reads it; the executor updates it after each action, and `settle` once per
pass with what the pass leaves behind.
"""

from __future__ import annotations

from dataclasses import dataclass

from xtm_composer.domain import Connector

BACKOFF_BASE_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 300.0
FAILURES_BEFORE_BACKOFF = 2


@dataclass(slots=True)
class ConnectorMemory:
    last_logs_at: float | None = None
    last_logs_digest: int | None = None
    last_health_at: float | None = None
    health_wanted: bool = False  # set by a start: report health as soon as it runs
    was_up: bool = False
    failures: int = 0
    backoff_until: float = 0.0
    last_error: str | None = None
    # Starts the composer made itself (the engine's restart count only knows its own restarts).
    composer_restarts: int = 0
    # Since when (monotonic) health reports show a reboot loop; None when not looping.
    loop_since: float | None = None
    # Stopped because of a reboot loop: not started again until the admin stops/starts it or the
    # configuration changes (held_hash is the hash it was stopped with).
    held_for_loop: bool = False
    held_hash: str | None = None
    last_health: tuple[int, str | None, bool] | None = None  # restart count, started at, loop: for `status`
    failed_for: tuple[str | None, str] | None = None
    noted_error: str | None = None  # the last error shown on the platform (each one once)
    last_start_at: float | None = None  # when the composer last deployed/started it

    def record_failure(self, error: str, *, now: float, failed_for: tuple[str | None, str] | None = None) -> None:
        """`failed_for` is the (hash, requested status) the failure happened with: when the admin
        changes either, the backoff no longer applies (the fix may be exactly that change)."""
        self.failures += 1
        self.last_error = error
        self.failed_for = failed_for
        if self.failures >= FAILURES_BEFORE_BACKOFF:
            delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (self.failures - FAILURES_BEFORE_BACKOFF))
            self.backoff_until = now + delay

    def record_success(self) -> None:
        self.noted_error = None
        self.failures = 0
        self.backoff_until = 0.0
        self.last_error = None

    def in_backoff(self, now: float, connector: Connector | None = None) -> bool:
        if now >= self.backoff_until:
            return False
        if connector is not None and self.failed_for is not None:
            return self.failed_for == (connector.contract_hash, connector.requested_status.value)
        return True

    def is_held(self, contract_hash: str | None) -> bool:
        return self.held_for_loop and self.held_hash == contract_hash

    def forget_workload(self) -> None:
        """A new workload replaces the old one: its counters start again."""
        self.composer_restarts = 0
        self.loop_since = None
        self.held_for_loop = False
        self.held_hash = None
