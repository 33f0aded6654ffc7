"""The reboot-loop rule shared by every orchestrator."""

from __future__ import annotations

from datetime import datetime, timedelta

from xtm_composer.domain import Health

REBOOT_LOOP_MIN_RESTARTS = 3  # more than this many restarts…
REBOOT_LOOP_WINDOW = timedelta(minutes=5)  # …while up for less than this: a reboot loop


def is_in_reboot_loop(*, restart_count: int, started_at: datetime | None, now: datetime) -> bool:
    if restart_count <= REBOOT_LOOP_MIN_RESTARTS:
        return False
    return started_at is None or now - started_at < REBOOT_LOOP_WINDOW


def health_from_state(
    *, restart_count: int, started_at: datetime | None, now: datetime, reason: str | None = None
) -> Health:
    return Health(
        restart_count=restart_count,
        started_at=started_at,
        is_in_reboot_loop=is_in_reboot_loop(restart_count=restart_count, started_at=started_at, now=now),
        reason=reason,
    )
