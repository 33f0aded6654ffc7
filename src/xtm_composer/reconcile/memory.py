"""Per-connector memory kept between passes: timers, backoff, last error.

The planner only reads it; the executor updates it after each action.
"""

from __future__ import annotations

from dataclasses import dataclass

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

    def record_failure(self, error: str, *, now: float) -> None:
        self.failures += 1
        self.last_error = error
        if self.failures >= FAILURES_BEFORE_BACKOFF:
            delay = min(BACKOFF_MAX_SECONDS, BACKOFF_BASE_SECONDS * 2 ** (self.failures - FAILURES_BEFORE_BACKOFF))
            self.backoff_until = now + delay

    def record_success(self) -> None:
        self.failures = 0
        self.backoff_until = 0.0
        self.last_error = None

    def in_backoff(self, now: float) -> bool:
        return now < self.backoff_until
