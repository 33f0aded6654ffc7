"""`xtm-composer plan` and `xtm-composer status`: read-only views of one pass and of the fleet."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from rich.console import Console
from rich.table import Table

from xtm_composer.daemon import PlatformRuntime
from xtm_composer.domain import Workload
from xtm_composer.errors import ComposerError
from xtm_composer.reconcile.actions import ReportHealth, ReportLogs, describe
from xtm_composer.status_file import read_status

ROUTINE_REPORTS = (ReportHealth, ReportLogs)


async def show_plan(runtimes: list[PlatformRuntime], console: Console) -> None:
    """One dry pass per platform: list, observe, plan, print. Nothing is changed."""
    for runtime in runtimes:
        desired, plan = await runtime.observe_and_plan()
        table = Table(title=f"{runtime.kind.value}: actions the next pass would take", expand=True)
        table.add_column("connector")
        table.add_column("action")
        table.add_column("detail")
        routine: Counter[str] = Counter()
        for action in plan.actions:
            if isinstance(action, ROUTINE_REPORTS):
                routine[action.kind] += 1
                continue
            connector = getattr(action, "connector", None)
            name = connector.name if connector else (action.workload.name if hasattr(action, "workload") else "-")
            table.add_row(name, action.kind, describe(action))
        if plan.held_removals:
            table.add_row("-", "hold", f"{len(plan.held_removals)} removals held until a second pass confirms them")
        console.print(table if table.row_count else f"{runtime.kind.value}: nothing to change")
        if routine:
            console.print("  plus routine reports: " + ", ".join(f"{n} {kind}" for kind, n in sorted(routine.items())))
        if desired.unparsed_ids:
            console.print(
                f"  {len(desired.unparsed_ids)} listed connectors are unusable (malformed) and left alone: "
                + ", ".join(sorted(desired.unparsed_ids))
            )


def _uptime(started_at: datetime | None, up: bool) -> str:
    if not up or started_at is None:
        return "-"
    seconds = int((datetime.now(UTC) - started_at).total_seconds())
    hours, rest = divmod(max(seconds, 0), 3600)
    return f"{hours}h{rest // 60:02d}m" if hours else f"{rest // 60}m{rest % 60:02d}s"


async def show_status(runtimes: list[PlatformRuntime], console: Console) -> None:
    for runtime in runtimes:
        desired, plan = await runtime.observe_and_plan()
        observed = await runtime.orchestrator.list_workloads(manager_id=runtime.manager_id)
        known = (read_status(runtime.status_file) if runtime.status_file else None) or {}
        errors = known.get("connectors", {}) if known.get("manager_id") == runtime.manager_id else {}
        table = Table(title=f"{runtime.kind.value}: connectors of manager {runtime.manager_id}", expand=True)
        for column in (
            "connector",
            "requested",
            "current",
            "workload",
            "restarts",
            "uptime",
            "reboot loop",
            "last error",
        ):
            table.add_column(column, overflow="fold")
        for connector in desired.connectors:
            workload = _workload_of(observed, connector.id, plan.names.get(connector.id))
            restarts, uptime, loop = "-", "-", "-"
            if workload is not None and workload.state.is_up:
                try:
                    health = await runtime.orchestrator.health(workload)
                    restarts = str(health.restart_count)
                    uptime = _uptime(health.started_at, workload.state.is_up)
                    loop = "yes" if health.is_in_reboot_loop else "no"
                except ComposerError as exc:
                    restarts = f"? ({exc})"
            entry = errors.get(connector.id, {})
            last_error = entry.get("last_error") or ("held: reboot loop" if entry.get("held_for_reboot_loop") else "")
            table.add_row(
                connector.name,
                connector.requested_status.value,
                connector.current_status.value if connector.current_status else "-",
                f"{workload.name} ({workload.state.value})" if workload else "missing",
                restarts,
                uptime,
                loop,
                last_error or "-",
            )
        console.print(table)


def _workload_of(observed: list[Workload], connector_id: str, name: str | None) -> Workload | None:
    mine = [w for w in observed if w.connector_id == connector_id]
    return next((w for w in mine if w.name == name), mine[0] if mine else None)
