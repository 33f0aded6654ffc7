"""Pure payloads for Docker Swarm: the `daemon.swarm` option table, service specs and CA configs.

Every `SwarmSettings` field is routed by `SWARM_OPTION_TABLE` to its Engine API field inside the
service's `TaskTemplate`; a unit test checks the table covers every field, so an option can never
be accepted by the settings and then silently ignored. Unset options are left out, which means
the engine's defaults (restart condition `any` after 5 s, like `docker service create`).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xtm_composer.config.swarm import SwarmResources, SwarmSettings, SwarmUlimit, swarm_host_entry
from xtm_composer.domain import MountedFile, WorkloadSpec
from xtm_composer.orchestrators.docker_engine import LABEL_CONFIG_HASH

# Files given to services (the proxy CA bundle) are Swarm configs: every node can mount them,
# which a bind mount of a file written on the composer's host could not promise.
CONFIG_PREFIX = "xtm-composer-file-"
CONFIG_FILE_MODE = 0o444


@dataclass(frozen=True, slots=True)
class Route:
    path: tuple[str, ...]  # where the value lands, from the TaskTemplate
    convert: Callable[[Any], Any]


def _strings(value: Sequence[str]) -> list[str]:
    return [str(item) for item in value]


def _hosts(value: Sequence[str]) -> list[str]:
    return [swarm_host_entry(entry) for entry in value]


def _sysctls(value: Mapping[str, Any]) -> dict[str, str]:
    return {str(key): str(item) for key, item in value.items()}


def _ulimits(value: Sequence[SwarmUlimit]) -> list[dict[str, Any]]:
    return [{"Name": u.name, "Soft": u.soft, "Hard": u.hard} for u in value]


def _resources(value: SwarmResources) -> dict[str, Any] | None:
    resources: dict[str, Any] = {}
    for key, cpu, memory in (
        ("Limits", value.cpu_limit, value.memory_limit),
        ("Reservations", value.cpu_reservation, value.memory_reservation),
    ):
        part = {field: amount for field, amount in (("NanoCPUs", cpu), ("MemoryBytes", memory)) if amount is not None}
        if part:
            resources[key] = part
    return resources or None


def _spread(value: Sequence[str]) -> list[dict[str, Any]]:
    return [{"Spread": {"SpreadDescriptor": descriptor}} for descriptor in value]


# Our option name → its place in the Engine API `TaskTemplate` (docs: ServiceSpec/TaskSpec).
SWARM_OPTION_TABLE: dict[str, Route] = {
    "network": Route(("Networks",), lambda name: [{"Target": name}]),
    "extra_hosts": Route(("ContainerSpec", "Hosts"), _hosts),
    "dns": Route(("ContainerSpec", "DNSConfig", "Nameservers"), _strings),
    "dns_search": Route(("ContainerSpec", "DNSConfig", "Search"), _strings),
    "cap_add": Route(("ContainerSpec", "CapabilityAdd"), _strings),
    "cap_drop": Route(("ContainerSpec", "CapabilityDrop"), _strings),
    "sysctls": Route(("ContainerSpec", "Sysctls"), _sysctls),
    "ulimits": Route(("ContainerSpec", "Ulimits"), _ulimits),
    "hostname": Route(("ContainerSpec", "Hostname"), str),
    "user": Route(("ContainerSpec", "User"), str),
    "read_only": Route(("ContainerSpec", "ReadOnly"), bool),
    "init": Route(("ContainerSpec", "Init"), bool),
    "stop_grace_period": Route(("ContainerSpec", "StopGracePeriod"), int),
    "resources": Route(("Resources",), _resources),
    "placement_constraints": Route(("Placement", "Constraints"), _strings),
    "placement_preferences": Route(("Placement", "Preferences"), _spread),
    "restart_condition": Route(("RestartPolicy", "Condition"), str),
    "restart_delay": Route(("RestartPolicy", "Delay"), int),
    "restart_max_attempts": Route(("RestartPolicy", "MaxAttempts"), int),
}


def _place(target: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        target = target.setdefault(key, {})
    target[path[-1]] = value


def task_template(
    options: SwarmSettings | None,
    *,
    image: str,
    env: Sequence[tuple[str, str]],
    configs: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The service's `TaskTemplate`: the container and every configured option."""
    template: dict[str, Any] = {
        "ContainerSpec": {"Image": image, "Env": [f"{key}={value}" for key, value in env]},
    }
    if configs:
        template["ContainerSpec"]["Configs"] = [dict(config) for config in configs]
    for option, route in SWARM_OPTION_TABLE.items():
        value = getattr(options, option) if options is not None else None
        if value is None:
            continue
        converted = route.convert(value)
        if converted is not None:
            _place(template, route.path, converted)
    return template


def service_labels(spec: WorkloadSpec) -> dict[str, str]:
    """Ownership labels plus the hash, so a listing never needs to read env."""
    return {**spec.labels, LABEL_CONFIG_HASH: spec.config_hash}


def service_spec(
    spec: WorkloadSpec,
    options: SwarmSettings | None,
    *,
    image: str,
    replicas: int,
    configs: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """The exact body of `POST /services/create` for one connector (no I/O)."""
    return {
        "Name": spec.name,
        "Labels": service_labels(spec),
        "TaskTemplate": task_template(options, image=image, env=spec.env, configs=configs),
        "Mode": {"Replicated": {"Replicas": replicas}},
    }


def replicas_of(spec: Mapping[str, Any]) -> int | None:
    """Desired replicas of a service spec; None for a global (or unknown-mode) service."""
    replicated = (spec.get("Mode") or {}).get("Replicated")
    if not isinstance(replicated, Mapping):
        return None
    return int(replicated.get("Replicas") or 0)


def with_replicas(spec: Mapping[str, Any], replicas: int) -> dict[str, Any]:
    """A copy of a service spec scaled to `replicas` (the body of `POST /services/{id}/update`)."""
    updated = copy.deepcopy(dict(spec))
    updated.setdefault("Mode", {}).setdefault("Replicated", {})["Replicas"] = replicas
    return updated


def with_forced_restart(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A copy whose `ForceUpdate` counter moved on: Swarm replaces the task (`service update --force`)."""
    updated = copy.deepcopy(dict(spec))
    template = updated.setdefault("TaskTemplate", {})
    template["ForceUpdate"] = int(template.get("ForceUpdate") or 0) + 1
    return updated


# -- files as Swarm configs ---------------------------------------------------------------------
def config_name(manager_id: str, mounted: MountedFile) -> str:
    """One config per manager and content: immutable, found again by name, never shared across managers."""
    digest = hashlib.sha256(f"{manager_id}\x00{mounted.content}".encode()).hexdigest()[:32]
    return f"{CONFIG_PREFIX}{digest}"


def config_reference(mounted: MountedFile, *, config_id: str, name: str) -> dict[str, Any]:
    """`ContainerSpec.Configs[]`: mounted read-only at the file's path, readable by any user."""
    return {
        "File": {"Name": mounted.path, "UID": "0", "GID": "0", "Mode": CONFIG_FILE_MODE},
        "ConfigID": config_id,
        "ConfigName": name,
    }


def config_names_of(spec: Mapping[str, Any]) -> list[str]:
    """Names of the configs of ours a service spec mounts."""
    container = ((spec.get("TaskTemplate") or {}).get("ContainerSpec")) or {}
    names = [str(c.get("ConfigName") or "") for c in container.get("Configs") or []]
    return [name for name in names if name.startswith(CONFIG_PREFIX)]
