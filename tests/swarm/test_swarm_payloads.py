"""Swarm decisions without an engine: option table → Engine API fields, settings validation, what a
service's tasks say (state, restarts, start time, reason), and engine refusals → typed errors."""

from __future__ import annotations

import re

import docker.errors
import pytest
import requests
import yaml
from pydantic import ValidationError

from xtm_composer.config.swarm import SwarmSettings, swarm_host_entry
from xtm_composer.domain import MountedFile, WorkloadState
from xtm_composer.errors import OrchestratorError, OrchestratorForbidden, OrchestratorUnavailable
from xtm_composer.orchestrators.docker_logs import sorted_by_timestamp
from xtm_composer.orchestrators.swarm import (
    SwarmOrchestrator,
    _RestartTally,
    replaced_task_ids,
    running_since,
    service_state,
    task_problem,
)
from xtm_composer.orchestrators.swarm_options import (
    SWARM_OPTION_TABLE,
    config_name,
    service_spec,
    task_template,
    with_forced_restart,
    with_replicas,
)

from ..paths import RUST_DEFAULT_CONFIG
from .helpers import make_spec

OPTION_CASES = [
    ("network", "connectors", ("Networks",), [{"Target": "connectors"}]),
    (
        "extra_hosts",
        ["host.docker.internal:host-gateway"],
        ("ContainerSpec", "Hosts"),
        ["host-gateway host.docker.internal"],
    ),
    ("dns", ["8.8.8.8"], ("ContainerSpec", "DNSConfig", "Nameservers"), ["8.8.8.8"]),
    ("dns_search", ["example.com"], ("ContainerSpec", "DNSConfig", "Search"), ["example.com"]),
    ("cap_add", ["NET_ADMIN"], ("ContainerSpec", "CapabilityAdd"), ["NET_ADMIN"]),
    ("cap_drop", ["MKNOD"], ("ContainerSpec", "CapabilityDrop"), ["MKNOD"]),
    ("sysctls", {"net.core.somaxconn": 1024}, ("ContainerSpec", "Sysctls"), {"net.core.somaxconn": "1024"}),
    (
        "ulimits",
        [{"name": "nofile", "soft": 65536, "hard": 65536}],
        ("ContainerSpec", "Ulimits"),
        [{"Name": "nofile", "Soft": 65536, "Hard": 65536}],
    ),
    ("hostname", "my-connector", ("ContainerSpec", "Hostname"), "my-connector"),
    ("user", "1000:1000", ("ContainerSpec", "User"), "1000:1000"),
    ("read_only", False, ("ContainerSpec", "ReadOnly"), False),
    ("init", True, ("ContainerSpec", "Init"), True),
    ("stop_grace_period", 10_000_000_000, ("ContainerSpec", "StopGracePeriod"), 10_000_000_000),
    ("resources", {"cpu_limit": 10**9}, ("Resources",), {"Limits": {"NanoCPUs": 10**9}}),
    ("placement_constraints", ["node.role==worker"], ("Placement", "Constraints"), ["node.role==worker"]),
    (
        "placement_preferences",
        ["node.labels.zone"],
        ("Placement", "Preferences"),
        [{"Spread": {"SpreadDescriptor": "node.labels.zone"}}],
    ),
    ("restart_condition", "on-failure", ("RestartPolicy", "Condition"), "on-failure"),
    ("restart_delay", 5_000_000_000, ("RestartPolicy", "Delay"), 5_000_000_000),
    ("restart_max_attempts", 3, ("RestartPolicy", "MaxAttempts"), 3),
]


def at(payload, path):
    for key in path:
        payload = payload[key]
    return payload


@pytest.mark.parametrize(("option", "value", "path", "expected"), OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_each_swarm_option_reaches_its_engine_api_field(option, value, path, expected):
    template = task_template(SwarmSettings(**{option: value}), image="i:1", env=[("A", "1")])
    assert at(template, path) == expected


def test_every_swarm_setting_is_mapped_by_the_table():
    assert set(SWARM_OPTION_TABLE) == set(SwarmSettings.model_fields)
    assert {case[0] for case in OPTION_CASES} == set(SwarmSettings.model_fields)


def test_no_option_set_gives_only_image_and_env_so_the_engine_defaults_apply():
    template = task_template(None, image="i:1", env=[("A", "x=y"), ("B", "")])
    assert template == {"ContainerSpec": {"Image": "i:1", "Env": ["A=x=y", "B="]}}
    assert task_template(SwarmSettings(resources={}), image="i:1", env=[]) == {
        "ContainerSpec": {"Image": "i:1", "Env": []}
    }


def test_the_rust_composer_documented_swarm_block_loads_and_maps_completely():
    text = RUST_DEFAULT_CONFIG.read_text()
    block = re.search(r"^    # swarm:\n((?:    #   .*\n)+)", text, re.M)
    assert block is not None
    uncommented = "\n".join(line.replace("    #   ", "", 1) for line in block.group(1).splitlines())
    options = SwarmSettings(**yaml.safe_load(uncommented))
    template = task_template(options, image="i:1", env=[])
    assert template["RestartPolicy"] == {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 3}
    assert template["Resources"] == {
        "Limits": {"NanoCPUs": 1_000_000_000, "MemoryBytes": 536870912},
        "Reservations": {"NanoCPUs": 500_000_000, "MemoryBytes": 268435456},
    }
    assert template["ContainerSpec"]["Hosts"] == ["host-gateway host.docker.internal"]
    assert template["Networks"] == [{"Target": "my-overlay-network"}]


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ("db:10.0.0.2", "10.0.0.2 db"),
        ("db=10.0.0.2", "10.0.0.2 db"),
        ("v6host:::1", "::1 v6host"),
        ("v6host:[fe80::1]", "fe80::1 v6host"),
        ("10.0.0.2  db  db.local", "10.0.0.2 db db.local"),
    ],
)
def test_extra_hosts_take_swarm_form_whichever_form_they_are_written_in(entry, expected):
    assert swarm_host_entry(entry) == expected


@pytest.mark.parametrize(
    "bad",
    [
        {"restart_condition": "always"},
        {"ulimits": [{"name": "nofile", "soft": 1}]},
        {"ulimits": [{"name": "nofile", "soft": 10, "hard": 5}]},
        {"extra_hosts": ["just-a-name"]},
        {"stop_grace_period": -1},
        {"resources": {"cpu_limit": 1, "gpu": 1}},
        {"replicas": 2},
    ],
)
def test_malformed_swarm_options_are_refused_at_start_up(bad):
    with pytest.raises(ValidationError):
        SwarmSettings(**bad)


def test_service_spec_carries_labels_with_hash_replicas_and_ca_config():
    spec = make_spec("m1", "img:1", name="conn", files=(MountedFile("/etc/ca.crt", "PEM"),))
    body = service_spec(spec, None, image="reg/img:1", replicas=0, configs=[{"ConfigID": "x"}])
    assert body["Name"] == "conn" and body["Mode"] == {"Replicated": {"Replicas": 0}}
    assert body["Labels"] == {**spec.labels, "opencti-config-hash": "h1"}
    assert body["TaskTemplate"]["ContainerSpec"]["Configs"] == [{"ConfigID": "x"}]
    assert config_name("m1", spec.files[0]) != config_name("m2", spec.files[0])


def test_scaling_and_forced_restart_change_only_their_field():
    spec = {"Name": "s", "Mode": {"Replicated": {"Replicas": 1}}, "TaskTemplate": {"ContainerSpec": {"Image": "i"}}}
    assert with_replicas(spec, 0) == {**spec, "Mode": {"Replicated": {"Replicas": 0}}}
    forced = with_forced_restart(with_forced_restart(spec))
    assert forced["TaskTemplate"] == {"ContainerSpec": {"Image": "i"}, "ForceUpdate": 2}
    assert spec["Mode"]["Replicated"]["Replicas"] == 1 and "ForceUpdate" not in spec["TaskTemplate"]


# -- tasks ---------------------------------------------------------------------------------------
SPEC_A = {"ContainerSpec": {"Image": "i"}, "ForceUpdate": 0}
SPEC_B = {"ContainerSpec": {"Image": "i"}, "ForceUpdate": 1}


def task(ident, state, second, *, spec=SPEC_A, slot=1, err=None):
    stamp = f"2026-01-01T00:00:{second:02d}.5Z"
    status = {"State": state, "Timestamp": stamp, **({"Err": err} if err else {})}
    return {"ID": ident, "Slot": slot, "Spec": spec, "CreatedAt": stamp, "Status": status}


@pytest.mark.parametrize(
    ("desired", "running", "tasks", "expected"),
    [
        (0, 0, [], WorkloadState.EXITED),
        (1, 1, [], WorkloadState.RUNNING),
        (1, 0, [], WorkloadState.PENDING),
        (1, 0, [task("a", "preparing", 1)], WorkloadState.PENDING),
        (1, 0, [task("a", "failed", 1), task("b", "ready", 2)], WorkloadState.RESTARTING),
        (1, 0, [task("a", "failed", 1), task("b", "rejected", 2), task("c", "new", 3)], WorkloadState.PENDING),
        (1, 0, [task("a", "failed", 1), task("b", "failed", 2)], WorkloadState.DEAD),
        (1, 0, [task("a", "complete", 1)], WorkloadState.EXITED),
        (1, None, [task("a", "failed", 1), task("b", "running", 2)], WorkloadState.RUNNING),
    ],
    ids=[
        "scaled-to-0",
        "running",
        "not-scheduled",
        "starting",
        "crash-looping",
        "refused-and-retried",
        "gave-up",
        "ended-cleanly",
        "no-status",
    ],
)
def test_service_state_from_replicas_and_tasks(desired, running, tasks, expected):
    assert service_state(desired=desired, running=running, tasks=tasks) is expected


def test_restarts_are_tasks_the_engine_replaced_not_scale_downs_updates_or_the_last_failure():
    tasks = [
        task("crash-1", "failed", 1),
        task("crash-2", "rejected", 2),
        task("clean-exit", "complete", 3),
        task("scaled-down", "shutdown", 4),
        task("before-forced-restart", "failed", 5),
        task("forced", "failed", 6, spec=SPEC_B),  # newest: nothing replaced it (yet)
        task("other-slot-crash", "failed", 1, slot=2),
        task("other-slot-now", "running", 2, slot=2),
    ]
    assert replaced_task_ids(tasks) == {"crash-1", "crash-2", "clean-exit", "other-slot-crash"}


def test_restart_count_keeps_growing_after_the_engine_prunes_old_tasks():
    tally = _RestartTally()
    assert tally.update({"t1", "t2", "t3"}) == 3
    assert tally.update({"t2", "t3", "t4"}) == 4  # t1 pruned from history, t4 new
    assert tally.update({"t4", "t5"}) == 5


def test_started_at_is_when_the_running_task_started_running():
    tasks = [task("a", "failed", 1), task("b", "running", 7)]
    assert running_since(tasks).isoformat() == "2026-01-01T00:00:07.500000+00:00"
    assert running_since([task("a", "failed", 1)]) is None


def test_the_engine_reason_comes_from_the_newest_task_in_trouble():
    crashed = task("a", "failed", 1, err="task: non-zero exit (1)")
    unplaceable = task("b", "pending", 2, err="no suitable node (scheduling constraints not satisfied on 1 node)")
    assert task_problem([crashed, unplaceable]) == f"pending: {unplaceable['Status']['Err']}"
    assert task_problem([crashed, task("c", "running", 3)]) == "failed: task: non-zero exit (1)"
    assert task_problem([task("c", "running", 3, err="stale")]) is None


def test_service_log_lines_are_merged_by_time_whatever_the_fraction_length():
    lines = [
        "2026-01-01T00:00:01.5Z second",
        "2026-01-01T00:00:01.123456789Z first",
        "2026-01-01T00:00:02Z third",
        "no timestamp: follows third",
    ]
    assert sorted_by_timestamp(lines) == ["first", "second", "third", "no timestamp: follows third"]


class RefusingEngine:
    """Stands for a docker-py client whose engine answers every request with one error."""

    api_version = "1.41"

    def __init__(self, status: int, explanation: str) -> None:
        self.hooks = {"response": []}
        response = requests.Response()
        response.status_code = status
        self.error = docker.errors.APIError("refused", response=response, explanation=explanation)

    def services(self, **_kwargs):
        raise self.error

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("status", "explanation", "error"),
    [
        (503, 'This node is not a swarm manager. Use "docker swarm init"', OrchestratorUnavailable),
        (403, "authorization denied by plugin opa: list services", OrchestratorForbidden),
        (400, "invalid filter 'label'", OrchestratorError),
    ],
)
async def test_engine_refusals_become_typed_errors_with_the_engine_words(status, explanation, error):
    orchestrator = SwarmOrchestrator(client_factory=lambda: RefusingEngine(status, explanation))
    with pytest.raises(error, match=re.escape(explanation)):
        await orchestrator.list_workloads(manager_id="m")
