"""Properties of plan + execute over a simulated engine: one pass converges, the next plan is
empty, and nothing without our manager label is ever touched."""

from __future__ import annotations

import asyncio

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.crypto import load_private_key_file
from xtm_composer.daemon import PlatformRuntime
from xtm_composer.domain import (
    LABEL_CONNECTOR_ID,
    LABEL_MANAGER,
    LABEL_PLATFORM,
    Connector,
    CurrentStatus,
    PlatformKind,
    RequestedStatus,
    WorkloadState,
)
from xtm_composer.reconcile.planner import is_ours
from xtm_composer.testing.simulated import SimulatedContainer, SimulatedOrchestrator, SimulatedPlatform

from ..paths import SHARED_VECTORS

MANAGER = "prop-manager"
KEY = load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem")
IDS = [f"id-{i}" for i in range(8)]

connector_strategy = st.builds(
    Connector,
    id=st.sampled_from(IDS),
    name=st.text(min_size=1, max_size=20),
    image=st.just("img:1"),
    contract_hash=st.sampled_from(["h1", "h2", None]),
    requested_status=st.sampled_from(list(RequestedStatus)),
    current_status=st.sampled_from([None, *CurrentStatus]),
)

ours_strategy = st.builds(
    lambda cid, name, state, hash_, platform: SimulatedContainer(
        name=name,
        labels={LABEL_MANAGER: MANAGER, LABEL_CONNECTOR_ID: cid, **({LABEL_PLATFORM: platform} if platform else {})},
        config_hash=hash_,
        state=state,
    ),
    cid=st.sampled_from([*IDS, "gone-1", "gone-2"]),
    name=st.text(alphabet="abc-", min_size=1, max_size=6).map(lambda n: f"w{n}"),
    state=st.sampled_from([WorkloadState.RUNNING, WorkloadState.EXITED, WorkloadState.CREATED]),
    hash_=st.sampled_from(["h1", "h2", None]),
    platform=st.sampled_from(["opencti", None]),
)

# Names with "_" are never valid DNS labels, so never a name the composer would choose.
foreign_strategy = st.builds(
    lambda i, labels: SimulatedContainer(
        name=f"foreign_{i}", labels=labels, config_hash="x", state=WorkloadState.RUNNING
    ),
    i=st.integers(0, 1000),
    labels=st.sampled_from(
        [
            {},
            {LABEL_MANAGER: "another-manager", LABEL_CONNECTOR_ID: "id-1"},
            {LABEL_MANAGER: MANAGER, LABEL_CONNECTOR_ID: "id-2", LABEL_PLATFORM: "openaev"},
            {LABEL_CONNECTOR_ID: "id-3"},
        ]
    ),
)


def unique_by(items, key):
    seen, result = set(), []
    for item in items:
        if key(item) not in seen:
            seen.add(key(item))
            result.append(item)
    return result


def runtime(platform, engine) -> PlatformRuntime:
    return PlatformRuntime(
        kind=PlatformKind.OPENCTI,
        platform=platform,
        orchestrator=engine,
        settings=PlatformSettings(enable=True, url="http://sim", token="t"),
        manager_id=MANAGER,
        manager_name="prop",
        private_key=KEY,
        execute_schedule=10,
        ping_alive_schedule=60,
        clock=lambda: 1000.0,
        max_removals=1000,
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    connectors=st.lists(connector_strategy, max_size=6).map(lambda cs: unique_by(cs, lambda c: c.id)),
    ours=st.lists(ours_strategy, max_size=6),
    foreign=st.lists(foreign_strategy, max_size=4),
)
def test_one_pass_converges_and_the_next_plan_is_empty(connectors, ours, foreign):
    containers = unique_by([*ours, *foreign], lambda c: c.name)
    foreign_before = {c.name: (c.engine_id, c.state, dict(c.labels)) for c in containers if c in foreign}
    engine = SimulatedOrchestrator(containers)
    platform = SimulatedPlatform(connectors)
    rt = runtime(platform, engine)

    first = asyncio.run(rt.reconcile_once())
    assert not first.report.failures, [o.error for o in first.report.failures]

    # Desired state reached: one workload per connector, right name, hash and running state.
    ours_after = [c for c in engine.containers.values() if is_ours(c.as_workload(), rt.plan_context())]
    for connector in connectors:
        (mine,) = [c for c in ours_after if c.labels[LABEL_CONNECTOR_ID] == connector.id]
        assert mine.name == first.plan.names[connector.id]
        assert mine.config_hash == (connector.contract_hash or "")
        assert mine.state.is_up is connector.should_run
        expected_status = CurrentStatus.STARTED if connector.should_run else CurrentStatus.STOPPED
        assert platform.connectors[connector.id].current_status is expected_status
    assert {c.labels[LABEL_CONNECTOR_ID] for c in ours_after} == {c.id for c in connectors}

    # Nothing without our manager label (or of the other platform) was touched.
    for name, before in foreign_before.items():
        container = engine.containers[name]
        assert (container.engine_id, container.state, container.labels) == before

    second = asyncio.run(rt.observe_and_plan())[1]
    assert second.actions == ()


@settings(max_examples=300, deadline=None)
@given(
    connectors=st.lists(connector_strategy, max_size=6).map(lambda cs: unique_by(cs, lambda c: c.id)),
    ours=st.lists(ours_strategy, max_size=6),
    foreign=st.lists(foreign_strategy, min_size=1, max_size=6),
    complete=st.booleans(),
)
def test_no_plan_ever_acts_on_a_workload_without_our_manager_label(connectors, ours, foreign, complete):
    """Even when an engine wrongly returns everything (no label filter), foreign workloads are never acted on."""
    from xtm_composer.domain import ConnectorList
    from xtm_composer.reconcile.actions import Recreate, Remove, Start, Stop
    from xtm_composer.reconcile.planner import PlanContext, plan

    observed = [c.as_workload() for c in unique_by([*ours, *foreign], lambda c: c.name)]
    ctx = PlanContext(
        manager_id=MANAGER,
        platform=PlatformKind.OPENCTI,
        logs_interval=10,
        health_interval=30,
        max_removals=0,
        max_removals_fraction=0,
    )
    result = plan(
        ConnectorList(connectors=tuple(connectors), complete=complete),
        observed,
        memory={},
        now=0.0,
        ctx=ctx,
        confirmed_orphans=frozenset(w.engine_id for w in observed),
    )
    for action in result.actions:
        touched = getattr(action, "workload", None) or getattr(action, "old", None)
        if isinstance(action, (Remove, Recreate, Start, Stop)):
            assert touched.manager_id == MANAGER and touched.platform in (None, "opencti")
