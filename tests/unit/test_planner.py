"""The planner's rules, one table row each: pure inputs in, actions out, no fakes."""

from __future__ import annotations

from dataclasses import replace

import pytest

from xtm_composer.domain import (
    LABEL_CONNECTOR_ID,
    LABEL_MANAGER,
    LABEL_PLATFORM,
    Connector,
    ConnectorList,
    CurrentStatus,
    PlatformKind,
    RequestedStatus,
    Workload,
    WorkloadState,
)
from xtm_composer.reconcile.actions import (
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
from xtm_composer.reconcile.planner import PlanContext, plan

MANAGER = "mgr-1"
CTX = PlanContext(manager_id=MANAGER, platform=PlatformKind.OPENCTI, logs_interval=10, health_interval=30)
NOW = 1000.0


def connector(
    cid: str = "c1",
    *,
    name: str = "Abuse.ch URLhaus",
    requested: RequestedStatus = RequestedStatus.STARTING,
    current: CurrentStatus | None = CurrentStatus.STARTED,
    hash_: str | None = "h1",
) -> Connector:
    return Connector(
        id=cid, name=name, image="img:1", contract_hash=hash_, requested_status=requested, current_status=current
    )


def workload(
    cid: str | None = "c1",
    *,
    name: str = "abuse-ch-urlhaus",
    state: WorkloadState = WorkloadState.RUNNING,
    hash_: str | None = "h1",
    manager: str | None = MANAGER,
    platform: str | None = "opencti",
) -> Workload:
    labels = {}
    if manager is not None:
        labels[LABEL_MANAGER] = manager
    if cid is not None:
        labels[LABEL_CONNECTOR_ID] = cid
    if platform is not None:
        labels[LABEL_PLATFORM] = platform
    return Workload(name=name, state=state, labels=labels, config_hash=hash_, engine_id=f"id-{name}")


def steady_memory(cid: str = "c1") -> dict[str, ConnectorMemory]:
    return {cid: ConnectorMemory(last_logs_at=NOW - 1, last_health_at=NOW - 1, was_up=True)}


def kinds(actions) -> list[str]:
    return sorted(a.kind for a in actions)


def run(connectors, workloads, memory=None, *, complete=True, unparsed=frozenset()):
    desired = ConnectorList(connectors=tuple(connectors), unparsed_ids=frozenset(unparsed), complete=complete)
    return plan(desired, workloads, memory=memory or {}, now=NOW, ctx=CTX).actions


def mem(**kwargs) -> dict[str, ConnectorMemory]:
    base = {"last_logs_at": NOW - 1, "last_health_at": NOW - 1, "was_up": True}
    return {"c1": ConnectorMemory(**{**base, **kwargs})}


STOPPING = {"requested": RequestedStatus.STOPPING, "current": CurrentStatus.STOPPED}

# (rule, connectors, workloads, memory, expected action kinds)
CASES = [
    (
        "missing workload is deployed, started and reported with health and logs in one pass",
        [connector(current=None)],
        [],
        None,
        ["deploy", "report-status", "report-health", "report-logs"],
    ),
    (
        "missing workload of a stopped connector is deployed without start",
        [connector(**STOPPING)],
        [],
        None,
        ["deploy"],
    ),
    (
        "missing workload of a stopped connector reported started is reported stopped",
        [connector(requested=RequestedStatus.STOPPING)],
        [],
        None,
        ["deploy", "report-status"],
    ),
    (
        "requested starting but exited is started and reported",
        [connector(current=CurrentStatus.STOPPED)],
        [workload(state=WorkloadState.EXITED)],
        mem(was_up=False),
        ["start", "report-status", "report-health"],
    ),
    (
        "requested stopping but running is stopped, reported, final logs pushed",
        [connector(requested=RequestedStatus.STOPPING)],
        [workload()],
        mem(),
        ["stop", "report-status", "report-logs"],
    ),
    (
        "hash change recreates and reports the new workload's health",
        [connector(hash_="h2")],
        [workload(hash_="h1")],
        mem(),
        ["recreate", "report-health"],
    ),
    (
        "a workload without hash counts as changed",
        [connector()],
        [workload(hash_=None)],
        mem(),
        ["recreate", "report-health"],
    ),
    (
        "a missing platform hash matches a workload deployed without one",
        [connector(hash_=None)],
        [workload(hash_="")],
        mem(),
        [],
    ),
    ("steady running connector does nothing", [connector()], [workload()], mem(), []),
    (
        "status reported only when it differs",
        [connector(current=CurrentStatus.STOPPED)],
        [workload()],
        mem(),
        ["report-status"],
    ),
    ("never reported status is reported", [connector(current=None)], [workload()], mem(), ["report-status"]),
    ("health right after a start", [connector()], [workload()], mem(health_wanted=True), ["report-health"]),
    ("health when first seen up", [connector()], [workload()], mem(was_up=False), ["report-health"]),
    ("health every 30 s while running", [connector()], [workload()], mem(last_health_at=NOW - 30), ["report-health"]),
    ("no health 29 s after the last", [connector()], [workload()], mem(last_health_at=NOW - 29), []),
    ("logs every logs_schedule", [connector()], [workload()], mem(last_logs_at=NOW - 10), ["report-logs"]),
    ("no logs 9 s after the last", [connector()], [workload()], mem(last_logs_at=NOW - 9), []),
    (
        "final logs once right after it went down",
        [connector(**STOPPING)],
        [workload(state=WorkloadState.EXITED)],
        mem(),
        ["report-logs"],
    ),
    (
        "no logs for a workload that stays down",
        [connector(**STOPPING)],
        [workload(state=WorkloadState.EXITED)],
        mem(last_logs_at=NOW - 100, was_up=False),
        [],
    ),
    ("orphan with our label is removed", [], [workload()], None, ["remove"]),
    ("orphan of the other platform is left alone", [], [workload(platform="openaev")], None, []),
    (
        "workload without platform label belongs to the listing platform",
        [connector()],
        [workload(platform=None)],
        mem(),
        [],
    ),
    ("orphan without platform label is removed", [], [workload(platform=None)], None, ["remove"]),
    ("workload without our manager label is never touched", [], [workload(manager="someone-else")], None, []),
    ("workload without any label is never touched", [], [workload(cid=None, manager=None, platform=None)], None, []),
    ("workload of ours without connector id is left alone", [], [workload(cid=None)], None, []),
    (
        "rename removes the stale workload and deploys the new name",
        [connector(name="URLhaus v2")],
        [workload(name="abuse-ch-urlhaus")],
        mem(),
        ["deploy", "remove", "report-health"],
    ),
    ("restarting counts as up: nothing to do", [connector()], [workload(state=WorkloadState.RESTARTING)], mem(), []),
    (
        "a connector held after a reboot loop is not started again",
        [connector(current=CurrentStatus.STOPPED)],
        [workload(state=WorkloadState.EXITED)],
        mem(was_up=False, held_for_loop=True, held_hash="h1"),
        [],
    ),
    (
        "a held connector whose configuration changed is recreated",
        [connector(hash_="h2")],
        [workload(state=WorkloadState.EXITED)],
        mem(was_up=False, held_for_loop=True, held_hash="h1"),
        ["recreate", "report-health"],
    ),
]


@pytest.mark.parametrize(("rule", "connectors", "workloads", "memory", "expected"), CASES, ids=[c[0] for c in CASES])
def test_planner_rule(rule, connectors, workloads, memory, expected):
    assert kinds(run(connectors, workloads, memory)) == sorted(expected)


def test_incomplete_list_removes_nothing():
    assert run([], [workload()], complete=False) == ()


def test_unparsed_connector_keeps_its_workload():
    assert run([], [workload()], unparsed={"c1"}) == ()


def test_workloads_of_connectors_in_backoff_are_not_changed_but_still_reported():
    memory = {
        "c1": ConnectorMemory(
            backoff_until=NOW + 50, failures=3, was_up=True, last_logs_at=NOW - 1, last_health_at=NOW - 1
        )
    }
    actions = run([connector(hash_="new", current=CurrentStatus.STOPPED)], [workload(hash_="old")], memory)
    assert kinds(actions) == ["report-status"]


def test_two_connectors_whose_names_collapse_get_distinct_names():
    a, b = connector("aaa", name="Foo Bar"), connector("bbb", name="foo-bar")
    actions = run([a, b], [])
    names = sorted(x.name for x in actions if isinstance(x, Deploy))
    assert names[0] == "foo-bar" and names[1].startswith("foo-bar-") and len(set(names)) == 2


def test_the_connector_already_running_under_a_contested_name_keeps_it():
    a, b = connector("zzz", name="Foo Bar"), connector("aaa", name="foo-bar")
    actions = run([a, b], [workload("zzz", name="foo-bar")], steady_memory("zzz"))
    deploys = [x for x in actions if isinstance(x, Deploy)]
    assert [d.connector.id for d in deploys] == ["aaa"] and deploys[0].name != "foo-bar"
    assert not [x for x in actions if isinstance(x, (Remove, Recreate))]


def test_recreate_keeps_requested_start_and_the_old_workload():
    old = workload(hash_="h0")
    (action,) = [a for a in run([connector()], [old], steady_memory()) if isinstance(a, Recreate)]
    assert action.old == old and action.start is True


def test_start_and_stop_target_the_observed_workload():
    w = workload(state=WorkloadState.EXITED)
    (start,) = [a for a in run([connector()], [w], {"c1": ConnectorMemory(last_logs_at=NOW)}) if isinstance(a, Start)]
    assert start.workload is w
    actions = run([connector(requested=RequestedStatus.STOPPING)], [workload()], steady_memory())
    (stop,) = [a for a in actions if isinstance(a, Stop)]
    assert stop.reason == "requested"


def test_report_actions_carry_the_observed_status():
    (status,) = run([replace(connector(), current_status=CurrentStatus.STOPPED)], [workload()], steady_memory())
    assert isinstance(status, ReportStatus) and status.status is CurrentStatus.STARTED
    assert not isinstance(status, (ReportHealth, ReportLogs))


def test_name_held_by_another_connectors_workload_is_a_collision_not_an_action():
    # "Foo" is listed but unusable (malformed): its workload keeps the name "foo"; a new connector
    # whose name cleans to "foo" must not take, remove or change it.
    actions = run([connector("new", name="FOO")], [workload("old", name="foo")], unparsed={"old"})
    assert [a.kind for a in actions] == ["collision"]


def test_name_freed_by_an_orphan_in_the_same_pass_is_deployed_after_the_removal():
    actions = run([connector("new", name="foo", **STOPPING)], [workload("gone", name="foo")])
    assert kinds(actions) == ["deploy", "remove"]


def test_name_freed_by_a_rename_in_the_same_pass_can_be_taken_by_another_connector():
    a = connector("a", name="Alpha", **STOPPING)  # was "beta", renamed to Alpha
    b = connector("b", name="Beta", **STOPPING)  # new connector wanting "beta"
    actions = run([a, b], [workload("a", name="beta")])
    assert kinds(actions) == ["deploy", "deploy", "remove"]


def test_reboot_loop_longer_than_the_limit_stops_the_connector():
    ctx = replace(CTX, reboot_loop_stop_after=600)
    desired = ConnectorList(connectors=(connector(),))
    memory = mem(loop_since=NOW - 600)
    actions = plan(desired, [workload()], memory=memory, now=NOW, ctx=ctx).actions
    (stop,) = [a for a in actions if isinstance(a, Stop)]
    assert "reboot loop" in stop.reason
    assert [a.status for a in actions if isinstance(a, ReportStatus)] == [CurrentStatus.STOPPED]
    assert not [
        a
        for a in plan(desired, [workload()], memory=mem(loop_since=NOW - 599), now=NOW, ctx=ctx).actions
        if isinstance(a, Stop)
    ]


def test_reboot_loop_never_stops_a_connector_without_the_setting():
    actions = plan(
        ConnectorList(connectors=(connector(),)), [workload()], memory=mem(loop_since=NOW - 10**6), now=NOW, ctx=CTX
    ).actions
    assert not [a for a in actions if isinstance(a, Stop)]


def orphans(n: int) -> list[Workload]:
    return [workload(f"gone-{i}", name=f"gone-{i}") for i in range(n)]


def test_removals_within_the_limit_are_applied_at_once():
    result = plan(ConnectorList(connectors=()), orphans(5), memory={}, now=NOW, ctx=CTX)
    assert len(result.of_kind(Remove)) == 5 and result.held_removals == ()


def test_a_sudden_drop_is_held_until_the_next_pass_confirms_it():
    first = plan(ConnectorList(connectors=()), orphans(6), memory={}, now=NOW, ctx=CTX)
    assert first.of_kind(Remove) == [] and len(first.held_removals) == 6
    second = plan(
        ConnectorList(connectors=()), orphans(6), memory={}, now=NOW, ctx=CTX, confirmed_orphans=first.orphan_keys
    )
    assert len(second.of_kind(Remove)) == 6 and second.held_removals == ()


def test_the_limit_grows_with_the_number_of_workloads():
    desired = ConnectorList(connectors=tuple(connector(f"keep-{i}", name=f"keep {i}") for i in range(40)))
    keep = [workload(f"keep-{i}", name=f"keep-{i}") for i in range(40)]
    result = plan(desired, keep + orphans(10), memory={}, now=NOW, ctx=CTX)  # 10 ≤ 20 % of 50
    assert len(result.of_kind(Remove)) == 10


def test_a_pending_workload_is_not_started_again_is_reported_stopped_and_its_health_still_goes_out():
    # e.g. Kubernetes CrashLoopBackOff / ImagePullBackOff: the engine retries by itself; not started.
    actions = run([connector()], [workload(state=WorkloadState.PENDING)], mem(was_up=False, last_health_at=NOW - 30))
    assert sorted(a.kind for a in actions) == ["report-health", "report-status"]
    assert [a.status for a in actions if isinstance(a, ReportStatus)] == [CurrentStatus.STOPPED]


def test_a_pending_workload_looping_too_long_is_stopped():
    ctx = replace(CTX, reboot_loop_stop_after=60)
    actions = plan(
        ConnectorList(connectors=(connector(),)),
        [workload(state=WorkloadState.PENDING)],
        memory=mem(was_up=False, loop_since=NOW - 61),
        now=NOW,
        ctx=ctx,
    ).actions
    assert [a.kind for a in actions if isinstance(a, Stop)] == ["stop"]


def test_removals_are_all_held_right_after_registering_again():
    ctx = replace(CTX, hold_removals=True)
    result = plan(ConnectorList(connectors=()), orphans(2), memory={}, now=NOW, ctx=ctx)
    assert result.of_kind(Remove) == [] and len(result.held_removals) == 2


def test_backoff_ends_when_the_admin_changes_the_configuration_or_the_requested_status():
    failing = {"c1": ConnectorMemory(backoff_until=NOW + 100, failures=3, failed_for=("h1", "starting"))}
    assert [a.kind for a in run([connector(current=None)], [], failing)] == ["report-status"]  # still backing off
    fixed = run([connector(hash_="h2", current=None)], [], failing)
    assert "deploy" in [a.kind for a in fixed]
    stopped = run([connector(requested=RequestedStatus.STOPPING, current=None)], [], failing)
    assert "deploy" in [a.kind for a in stopped]


def test_deleting_the_holder_of_a_contested_name_renames_no_other_connector():
    # "foo.bar" held "foo-bar"; "Foo Bar" and "FOO_BAR" run under their suffixed names.
    from xtm_composer.orchestrators.specs import suffixed_workload_name

    b, c = connector("bbb", name="Foo Bar"), connector("ccc", name="FOO_BAR")
    running = [
        workload("bbb", name=suffixed_workload_name("Foo Bar", "bbb")),
        workload("ccc", name=suffixed_workload_name("FOO_BAR", "ccc")),
        workload("aaa", name="foo-bar"),
    ]
    memory = {**steady_memory("bbb"), **steady_memory("ccc")}
    actions = run([b, c], running, memory)
    assert kinds(actions) == ["remove"] and actions[0].workload.name == "foo-bar"


def test_a_paused_workload_is_resumed_when_it_should_run_and_stopped_when_not():
    paused = workload(state=WorkloadState.PAUSED)
    assert "start" in kinds(run([connector(current=CurrentStatus.STOPPED)], [paused], mem(was_up=False)))
    assert "stop" in kinds(run([connector(**STOPPING)], [paused], mem(was_up=False)))


def test_a_workload_we_just_started_that_is_still_pending_does_not_flap_to_stopped():
    settling = mem(was_up=True, last_start_at=NOW - 5)
    assert "report-status" not in kinds(run([connector()], [workload(state=WorkloadState.PENDING)], settling))
    stuck = mem(was_up=True, last_start_at=NOW - 31)
    assert "report-status" in kinds(run([connector()], [workload(state=WorkloadState.PENDING)], stuck))
