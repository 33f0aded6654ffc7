"""The pure planner: (desired connectors, observed workloads, memory, now) → actions.

No I/O, no clock, no randomness: every reconcile rule is a row in a table test.
Ownership is checked here as well as in the orchestrator's label filter, so no plan can ever
touch a workload without our manager label, whatever an engine returns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from xtm_composer.domain import (
    Connector,
    ConnectorList,
    CurrentStatus,
    PlatformKind,
    Workload,
)
from xtm_composer.orchestrators.specs import assign_workload_names
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
)
from xtm_composer.reconcile.memory import ConnectorMemory


@dataclass(frozen=True, slots=True)
class PlanContext:
    manager_id: str
    platform: PlatformKind
    logs_interval: float
    health_interval: float


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    names: Mapping[str, str] = field(default_factory=dict)
    # Connectors skipped this pass because of repeated failures (id → seconds left).
    backing_off: Mapping[str, float] = field(default_factory=dict)
    # Whether each desired connector's workload was seen up: the caller stores it in memory.
    observed_up: Mapping[str, bool] = field(default_factory=dict)

    def of_kind(self, *kinds: type) -> list[Action]:
        return [a for a in self.actions if isinstance(a, kinds)]


_NO_MEMORY = ConnectorMemory()


def is_ours(workload: Workload, ctx: PlanContext) -> bool:
    """Our manager label, and our platform label or none (older composers set none)."""
    return workload.manager_id == ctx.manager_id and workload.platform in (None, ctx.platform.value)


def plan(
    desired: ConnectorList,
    observed: Sequence[Workload],
    *,
    memory: Mapping[str, ConnectorMemory],
    now: float,
    ctx: PlanContext,
) -> Plan:
    ours = [w for w in observed if is_ours(w, ctx)]
    by_connector: dict[str, list[Workload]] = {}
    for workload in ours:
        if workload.connector_id:
            by_connector.setdefault(workload.connector_id, []).append(workload)
    by_name = {w.name: w for w in ours}

    names = assign_workload_names(
        desired.connectors,
        current_owner=lambda name: by_name[name].connector_id if name in by_name else None,
    )
    known = {c.id for c in desired.connectors} | desired.unparsed_ids
    orphans = [w for w in ours if w.connector_id and w.connector_id not in known] if desired.complete else []
    # Names that this plan frees (orphans, and stale names of connectors allowed to change).
    freed = {w.name for w in orphans}
    for connector in desired.connectors:
        if not memory.get(connector.id, _NO_MEMORY).in_backoff(now):
            freed.update(w.name for w in by_connector.get(connector.id, []) if w.name != names[connector.id])

    actions: list[Action] = [Remove(w, reason="connector no longer on the platform") for w in orphans]
    backing_off: dict[str, float] = {}
    observed_up: dict[str, bool] = {}
    for connector in desired.connectors:
        mem = memory.get(connector.id, _NO_MEMORY)
        name = names[connector.id]
        if mem.in_backoff(now):
            backing_off[connector.id] = mem.backoff_until - now
        primary = next((w for w in by_connector.get(connector.id, []) if w.name == name), None)
        observed_up[connector.id] = primary is not None and primary.state.is_up
        holder = by_name.get(name)
        if primary is None and holder is not None and holder.name not in freed:
            actions.append(Collision(connector, name=name, holder=holder))
            continue
        actions.extend(
            _plan_connector(
                connector,
                name,
                by_connector.get(connector.id, []),
                mem,
                now=now,
                ctx=ctx,
                may_change=not mem.in_backoff(now),
            )
        )
    return Plan(actions=tuple(actions), names=names, backing_off=backing_off, observed_up=observed_up)


def _plan_connector(
    connector: Connector,
    name: str,
    workloads: list[Workload],
    mem: ConnectorMemory,
    *,
    now: float,
    ctx: PlanContext,
    may_change: bool,
) -> list[Action]:
    actions: list[Action] = []
    primary = next((w for w in workloads if w.name == name), None)
    for extra in workloads:
        if extra is not primary and may_change:
            # Same connector id under another name: renamed connector, or a duplicate.
            actions.append(Remove(extra, reason=f"stale workload of {connector.name!r} (now named {name})"))

    if primary is None:
        if may_change:
            actions.append(Deploy(connector, name=name, start=connector.should_run))
        if connector.current_status is not CurrentStatus.STOPPED:
            actions.append(ReportStatus(connector, CurrentStatus.STOPPED))
        return actions

    # A workload without a hash (adopted from elsewhere) counts as changed.
    hash_changed = primary.config_hash is None or primary.config_hash != (connector.contract_hash or "")
    if hash_changed and may_change:
        actions.append(Recreate(connector, name=name, old=primary, start=connector.should_run))
        return actions

    up = primary.state.is_up
    if may_change and connector.should_run and not up:
        actions.append(Start(connector, primary))
    elif may_change and not connector.should_run and up:
        actions.append(Stop(connector, primary))

    observed_status = CurrentStatus.STARTED if up else CurrentStatus.STOPPED
    if connector.current_status is not observed_status:
        actions.append(ReportStatus(connector, observed_status))

    if up and (
        mem.health_wanted
        or not mem.was_up
        or mem.last_health_at is None
        or now - mem.last_health_at >= ctx.health_interval
    ):
        actions.append(ReportHealth(connector, primary))

    # Logs while it runs, plus one last push right after it went down (its final lines).
    if (up or mem.was_up) and (mem.last_logs_at is None or now - mem.last_logs_at >= ctx.logs_interval or not up):
        actions.append(ReportLogs(connector, primary))
    return actions
