"""The pure planner: (desired connectors, observed workloads, memory, now) → actions.

No I/O, no clock, no randomness: every reconcile rule is a row in a table test.
Ownership is checked here as well as in the orchestrator's label filter, so no plan can ever
touch a workload without our manager label, whatever an engine returns.

Reports describe the state the pass leaves behind: a connector started in this pass is
reported `started` (with its health) in the same pass, so one pass converges. The executor
skips a connector's reports when its workload action failed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from xtm_composer.domain import (
    Connector,
    ConnectorList,
    CurrentStatus,
    PlatformKind,
    Workload,
    WorkloadState,
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
    # Stop a connector whose reboot loop lasted this long (seconds); None: never.
    reboot_loop_stop_after: float | None = None
    # A pass may remove at most max(max_removals, max_removals_fraction × our workloads) orphans
    # at once; a bigger drop is applied only when the next pass sees the same orphans again.
    max_removals: int = 5
    max_removals_fraction: float = 0.2
    # Hold every orphan removal this pass (right after the platform forgot this manager and it
    # registered again: the platform's list may not be complete yet).
    hold_removals: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    names: Mapping[str, str] = field(default_factory=dict)
    # Connectors skipped this pass because of repeated failures (id → seconds left).
    backing_off: Mapping[str, float] = field(default_factory=dict)
    # Whether each desired connector's workload was seen up, and will be up after this plan.
    observed_up: Mapping[str, bool] = field(default_factory=dict)
    expected_up: Mapping[str, bool] = field(default_factory=dict)
    # Orphans seen this pass (engine ids): the next pass confirms a sudden drop with them.
    orphan_keys: frozenset[str] = frozenset()
    # Orphans not removed because the drop was too sudden (waiting for confirmation).
    held_removals: tuple[Workload, ...] = ()

    def of_kind(self, *kinds: type) -> list[Action]:
        return [a for a in self.actions if isinstance(a, kinds)]


_NO_MEMORY = ConnectorMemory()


def is_ours(workload: Workload, ctx: PlanContext) -> bool:
    """Our manager label, and our platform label or none (older composers set none)."""
    return workload.manager_id == ctx.manager_id and workload.platform in (None, ctx.platform.value)


def workload_key(workload: Workload) -> str:
    return workload.engine_id or workload.name


def plan(
    desired: ConnectorList,
    observed: Sequence[Workload],
    *,
    memory: Mapping[str, ConnectorMemory],
    now: float,
    ctx: PlanContext,
    confirmed_orphans: frozenset[str] = frozenset(),
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
        current_names=lambda connector_id: [w.name for w in by_connector.get(connector_id, [])],
    )

    orphans, held = _orphans(desired, ours, ctx=ctx, confirmed=confirmed_orphans)
    # Names this plan frees (removed orphans, and stale names of connectors allowed to change).
    freed = {w.name for w in orphans}
    for connector in desired.connectors:
        if not memory.get(connector.id, _NO_MEMORY).in_backoff(now, connector):
            freed.update(w.name for w in by_connector.get(connector.id, []) if w.name != names[connector.id])

    actions: list[Action] = [Remove(w, reason="connector no longer on the platform") for w in orphans]
    backing_off: dict[str, float] = {}
    observed_up: dict[str, bool] = {}
    expected_up: dict[str, bool] = {}
    for connector in desired.connectors:
        mem = memory.get(connector.id, _NO_MEMORY)
        name = names[connector.id]
        if mem.in_backoff(now, connector):
            backing_off[connector.id] = mem.backoff_until - now
        primary = next((w for w in by_connector.get(connector.id, []) if w.name == name), None)
        observed_up[connector.id] = expected_up[connector.id] = primary is not None and primary.state.is_up
        holder = by_name.get(name)
        if primary is None and holder is not None and holder.name not in freed:
            actions.append(Collision(connector, name=name, holder=holder))
            continue
        connector_actions, up_after = _plan_connector(
            connector,
            name,
            primary,
            [w for w in by_connector.get(connector.id, []) if w is not primary],
            mem,
            now=now,
            ctx=ctx,
            may_change=not mem.in_backoff(now, connector),
        )
        expected_up[connector.id] = up_after
        actions.extend(connector_actions)
    return Plan(
        actions=tuple(actions),
        names=names,
        backing_off=backing_off,
        observed_up=observed_up,
        expected_up=expected_up,
        orphan_keys=frozenset(workload_key(w) for w in [*orphans, *held]),
        held_removals=tuple(held),
    )


def _orphans(
    desired: ConnectorList, ours: list[Workload], *, ctx: PlanContext, confirmed: frozenset[str]
) -> tuple[list[Workload], list[Workload]]:
    """(orphans to remove now, orphans held back until the next pass confirms them)."""
    if not desired.complete:
        return [], []  # an entry without an id could be any workload's connector
    known = {c.id for c in desired.connectors} | desired.unparsed_ids
    orphans = [w for w in ours if w.connector_id and w.connector_id not in known]
    if ctx.hold_removals:
        return [], orphans
    limit = max(ctx.max_removals, math.ceil(ctx.max_removals_fraction * len(ours)))
    if len(orphans) <= limit:
        return orphans, []
    now_removed = [w for w in orphans if workload_key(w) in confirmed]
    return now_removed, [w for w in orphans if workload_key(w) not in confirmed]


def _reference(connector: Connector, name: str) -> Workload:
    """A handle on the workload a deploy/recreate in this pass creates (found by name)."""
    return Workload(name=name, state=WorkloadState.UNKNOWN)


def _plan_connector(
    connector: Connector,
    name: str,
    primary: Workload | None,
    stale: list[Workload],
    mem: ConnectorMemory,
    *,
    now: float,
    ctx: PlanContext,
    may_change: bool,
) -> tuple[list[Action], bool]:
    actions: list[Action] = []
    if may_change:
        # Same connector id under another name: a renamed connector, or a duplicate.
        actions.extend(Remove(w, reason=f"stale workload of {connector.name!r} (now named {name})") for w in stale)

    up_now = primary is not None and primary.state.is_up
    up_after = up_now
    started = False
    target: Workload | None = primary
    # A workload without a hash (adopted from elsewhere) counts as changed.
    hash_changed = primary is not None and (
        primary.config_hash is None or primary.config_hash != (connector.contract_hash or "")
    )
    if primary is None or hash_changed:
        if may_change:
            if primary is None:
                actions.append(Deploy(connector, name=name, start=connector.should_run))
            else:
                actions.append(Recreate(connector, name=name, old=primary, start=connector.should_run))
            target, up_after, started = _reference(connector, name), connector.should_run, connector.should_run
        else:
            target = primary
    elif may_change:
        looping_too_long = (
            ctx.reboot_loop_stop_after is not None
            and mem.loop_since is not None
            and now - mem.loop_since >= ctx.reboot_loop_stop_after
        )
        # PENDING: meant to run, the engine keeps trying (image pull, crash-loop back-off, scheduling):
        # not started, and a start would add nothing.
        trying = primary.state is WorkloadState.PENDING
        # PAUSED (by someone else): not running; stopped when it should not run, resumed when it should.
        paused = primary.state is WorkloadState.PAUSED
        if (up_now or trying or paused) and not connector.should_run:
            actions.append(Stop(connector, primary, reason="requested"))
            up_after = False
        elif (up_now or trying) and looping_too_long:
            minutes = ctx.reboot_loop_stop_after / 60 if ctx.reboot_loop_stop_after else 0
            actions.append(Stop(connector, primary, reason=f"reboot loop for more than {minutes:g} min"))
            up_after = False
        elif not up_now and not trying and connector.should_run and not mem.is_held(connector.contract_hash):
            actions.append(Start(connector, primary))
            up_after = started = True

    status_after = CurrentStatus.STARTED if up_after else CurrentStatus.STOPPED
    # Just started by us and still PENDING (image pulling, pod or task being created): not a change
    # worth reporting yet, or the status would flap started → stopped → started.
    settling = (
        primary is not None
        and primary.state is WorkloadState.PENDING
        and connector.should_run
        and mem.last_start_at is not None
        and now - mem.last_start_at < ctx.health_interval
    )
    if connector.current_status is not status_after and not settling:
        actions.append(ReportStatus(connector, status_after))
    if target is None:
        return actions, up_after

    # Health while it runs, and while the engine keeps failing to run it (restart count, reason).
    failing = target is primary and primary is not None and primary.state is WorkloadState.PENDING
    health_due = mem.last_health_at is None or now - mem.last_health_at >= ctx.health_interval
    if (up_after and (started or mem.health_wanted or not mem.was_up or health_due)) or (
        failing
        and connector.should_run
        and not mem.is_held(connector.contract_hash)
        and health_due
        and not any(isinstance(a, Stop) for a in actions)
    ):
        actions.append(ReportHealth(connector, target))

    # Logs while it runs, plus one last push right after it went down (its final lines).
    logs_due = mem.last_logs_at is None or now - mem.last_logs_at >= ctx.logs_interval
    if (up_after and logs_due) or (not up_after and mem.was_up):
        actions.append(ReportLogs(connector, target))
    return actions, up_after
