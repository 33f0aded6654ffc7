"""Docker Swarm orchestrator (docker-py): one replicated service per connector.

A connector runs as a service with 1 replica and is stopped by scaling it to 0; ownership labels
and the config hash sit on the service. Talks to one manager node; logs come through the service
logs endpoint, so they are read wherever the task runs.

Observation is bulk: one `GET /services?status=true` filtered on our manager label per pass gives
every service with its running/desired task counts and its full spec (so the hash of services made
by the Rust composer, kept only in env, is read without more calls). Tasks are fetched only for
services that want a replica but run none, to tell "starting" from "restarting" from "gave up".

Updates (scale, forced restart) send the spec with the version just read; when something else
updated the service in between, Swarm answers "update out of sequence" and the update is made
again on a fresh read. Restart count = tasks the engine replaced after they failed, were
rejected or exited on their own; tasks shut down by scaling or updates are not restarts. Swarm
keeps only a few old tasks per slot (`TaskHistoryRetentionLimit`, 5 by default), so the count is
accumulated here from each new failed task seen, per service id.

Files (the proxy CA bundle) become Swarm configs named after manager and content, mounted
read-only: every node can mount them, unlike a file on the composer's own host.

Engine calls are blocking, so each runs in a worker thread; errors are translated in `_call`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

import docker
import docker.errors

from xtm_composer.config.settings import RegistrySettings
from xtm_composer.config.swarm import SwarmSettings
from xtm_composer.domain import (
    HASH_KEY,
    LABEL_CONFIG_HASH,
    LABEL_MANAGER,
    Health,
    MountedFile,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from xtm_composer.errors import (
    ImagePullError,
    InvalidWorkloadSpec,
    OrchestratorUnavailable,
)
from xtm_composer.observability import get_logger
from xtm_composer.orchestrators.docker_client import EngineConnection, explain
from xtm_composer.orchestrators.docker_common import parse_docker_time, registry_auth_header
from xtm_composer.orchestrators.docker_logs import (
    decode_log_lines,
    last_lines,
    multiplexed_from_content_type,
    sorted_by_timestamp,
)
from xtm_composer.orchestrators.docker_options import image_reference, registry_auth
from xtm_composer.orchestrators.health import health_from_state
from xtm_composer.orchestrators.specs import split_env_line
from xtm_composer.orchestrators.swarm_options import (
    config_name,
    config_names_of,
    config_reference,
    replicas_of,
    service_spec,
    with_forced_restart,
    with_replicas,
)

log = get_logger(__name__)
T = TypeVar("T")

UPDATE_ATTEMPTS = 5
UPDATE_RETRY_DELAY = 0.05  # seconds, times the attempt number
LOGS_TIMEOUT_SECONDS = 30  # a task on an unreachable node must not hold a log request forever
TASK_FILTER_CHUNK = 50  # service ids per `GET /tasks` (they travel in the query string)
OUT_OF_SEQUENCE = "update out of sequence"

# Task states (swarmkit's TaskState), grouped by what they mean for a connector.
ACTIVE_TASK_STATES = frozenset(
    {"new", "allocated", "pending", "assigned", "accepted", "preparing", "ready", "starting"}
)
RUNNING_TASK_STATE = "running"
# Ended without being asked to: a crash, a refusal (image, mount, constraints), a clean exit.
ENDED_ON_ITS_OWN = frozenset({"failed", "rejected", "complete"})
FAILED_TASK_STATES = frozenset({"failed", "rejected"})


# -- reading tasks (pure) -------------------------------------------------------------------------
def _task_state(task: Mapping[str, Any]) -> str:
    return str((task.get("Status") or {}).get("State") or "").lower()


def _task_order(task: Mapping[str, Any]) -> tuple[datetime, int]:
    created = parse_docker_time(task.get("CreatedAt")) or datetime.min.replace(tzinfo=UTC)
    return created, int((task.get("Version") or {}).get("Index") or 0)


def _slot(task: Mapping[str, Any]) -> Any:
    return task.get("Slot") or task.get("NodeID")  # global services have no slot: one per node


def _newest_per_slot(tasks: Iterable[Mapping[str, Any]]) -> dict[Any, Mapping[str, Any]]:
    newest: dict[Any, Mapping[str, Any]] = {}
    for task in tasks:
        slot = _slot(task)
        if slot not in newest or _task_order(task) > _task_order(newest[slot]):
            newest[slot] = task
    return newest


def replaced_task_ids(tasks: Iterable[Mapping[str, Any]]) -> set[str]:
    """Ids of tasks the engine restarted: they ended on their own (crash, refusal, clean exit) and a
    newer task with the same spec took their slot. A newer task with another spec comes from a
    service update (a forced restart by the composer, a config change): not an engine restart."""
    tasks = list(tasks)
    restarted: set[str] = set()
    for task in tasks:
        if _task_state(task) not in ENDED_ON_ITS_OWN:
            continue
        slot, spec, order = _slot(task), task.get("Spec"), _task_order(task)
        if any(_slot(other) == slot and other.get("Spec") == spec and _task_order(other) > order for other in tasks):
            restarted.add(str(task.get("ID")))
    return restarted


def running_since(tasks: Iterable[Mapping[str, Any]]) -> datetime | None:
    """When the newest running task started running (its last state change), or None."""
    times = [parse_docker_time((t.get("Status") or {}).get("Timestamp")) for t in tasks if _task_state(t) == "running"]
    known = [moment for moment in times if moment is not None]
    return max(known) if known else None


def service_state(*, desired: int, running: int | None, tasks: list[Mapping[str, Any]]) -> WorkloadState:
    """What one service amounts to. `running` from the service status, or None to count tasks.

    PENDING means "meant to run, the engine keeps trying" (the planner neither starts it again nor
    reports it started); RESTARTING means "it ran and the restart policy is bringing it back"."""
    if desired <= 0:
        return WorkloadState.EXITED
    if running is None:
        running = sum(1 for t in tasks if _task_state(t) == RUNNING_TASK_STATE)
    if running > 0:
        return WorkloadState.RUNNING
    newest = list(_newest_per_slot(tasks).values())
    if not newest:
        return WorkloadState.PENDING  # created, not scheduled yet
    if any(_task_state(t) in ACTIVE_TASK_STATES | {RUNNING_TASK_STATE} for t in newest):
        # A new task is on its way. After a task that ran and ended (crash, exit), the engine is
        # restarting it, as Docker's "restarting"; on a first start, or after refusals (image not
        # pullable, no node fits), it is still trying to get it running: pending.
        ended = [t for t in tasks if _task_state(t) in ENDED_ON_ITS_OWN]
        if ended and _task_state(max(ended, key=_task_order)) != "rejected":
            return WorkloadState.RESTARTING
        return WorkloadState.PENDING
    # Every slot ended and nothing replaces it: restart policy exhausted, or condition none/on-failure.
    if any(_task_state(t) in FAILED_TASK_STATES for t in newest):
        return WorkloadState.DEAD
    return WorkloadState.EXITED


def _desired_and_running(service: Mapping[str, Any]) -> tuple[int, int | None]:
    spec = service.get("Spec") or {}
    status = service.get("ServiceStatus") or {}
    replicas = replicas_of(spec)
    desired = replicas if replicas is not None else int(status.get("DesiredTasks") or 0)
    running = status.get("RunningTasks")
    return desired, (int(running) if running is not None else None)


def _needs_tasks(service: Mapping[str, Any]) -> bool:
    desired, running = _desired_and_running(service)
    return desired > 0 and not running


def _hash_of(spec: Mapping[str, Any]) -> str | None:
    labels = spec.get("Labels") or {}
    if LABEL_CONFIG_HASH in labels:
        return str(labels[LABEL_CONFIG_HASH])
    container = (spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}
    env = dict(split_env_line(line) for line in container.get("Env") or [])
    return env.get(HASH_KEY)


def task_problem(tasks: Iterable[Mapping[str, Any]]) -> str | None:
    """The engine's words about the newest task in trouble: "rejected: No such image: …",
    "failed: task: non-zero exit (1)", "pending: no suitable node (…)" (placement constraints)."""
    troubled = [t for t in tasks if _task_state(t) != RUNNING_TASK_STATE and (t.get("Status") or {}).get("Err")]
    if not troubled:
        return None
    newest = max(troubled, key=_task_order)
    return f"{_task_state(newest)}: {newest['Status']['Err']}"


def workload_from_service(service: Mapping[str, Any], tasks: list[Mapping[str, Any]]) -> Workload:
    spec = service.get("Spec") or {}
    desired, running = _desired_and_running(service)
    state = service_state(desired=desired, running=running, tasks=tasks)
    return Workload(
        name=str(spec.get("Name") or service.get("ID")),
        state=state,
        labels=dict(spec.get("Labels") or {}),
        config_hash=_hash_of(spec),
        engine_id=str(service.get("ID")) if service.get("ID") else None,
        detail=None if state in (WorkloadState.RUNNING, WorkloadState.EXITED) else task_problem(tasks),
    )


@dataclass
class _RestartTally:
    """Replaced tasks counted so far for one service, and the ids seen in the last read."""

    count: int = 0
    seen: frozenset[str] = field(default_factory=frozenset)

    def update(self, replaced: set[str]) -> int:
        # Ids that left the engine's history are gone for good; only new ids add to the count.
        self.count += len(replaced - self.seen)
        self.seen = frozenset(replaced)
        return self.count


# -- the orchestrator -----------------------------------------------------------------------------
class SwarmOrchestrator:
    """Runs connectors as Swarm services through one manager node."""

    def __init__(
        self,
        options: SwarmSettings | None = None,
        registry: RegistrySettings | None = None,
        *,
        client_factory: Callable[[], docker.APIClient] | None = None,
    ) -> None:
        self._options = options
        self._registry = registry
        self._engine = EngineConnection(client_factory)
        self._tallies: dict[str, _RestartTally] = {}
        self._tally_lock = threading.Lock()

    # -- plumbing -------------------------------------------------------------------------
    @property
    def api_calls(self) -> int:
        return self._engine.api_calls

    async def _call(self, what: str, fn: Callable[[docker.APIClient], T]) -> T:
        return await self._engine.call(what, fn)

    async def close(self) -> None:
        self._engine.drop()

    # -- observation ------------------------------------------------------------------------
    async def list_workloads(self, *, manager_id: str) -> list[Workload]:
        def observe(api: docker.APIClient) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
            label = {"label": f"{LABEL_MANAGER}={manager_id}"}
            # Running/desired counts come with the listing from API 1.41 (Docker 20.10) on.
            with_status = not docker.utils.version_lt(api.api_version, "1.41")
            services = api.services(filters=label, status=True) if with_status else api.services(filters=label)
            if not isinstance(services, list):
                raise OrchestratorUnavailable("list services: unexpected answer from the engine")
            wanted = [s["ID"] for s in services if _needs_tasks(s)]
            tasks: list[dict[str, Any]] = []
            for start in range(0, len(wanted), TASK_FILTER_CHUNK):
                tasks.extend(api.tasks(filters={"service": wanted[start : start + TASK_FILTER_CHUNK]}))
            return services, tasks

        services, tasks = await self._call("list services", observe)
        by_service: dict[str, list[Mapping[str, Any]]] = {}
        for task in tasks:
            by_service.setdefault(str(task.get("ServiceID")), []).append(task)
        live = {str(s.get("ID")) for s in services}
        with self._tally_lock:
            for gone in set(self._tallies) - live:
                del self._tallies[gone]
        return [workload_from_service(s, by_service.get(str(s.get("ID")), [])) for s in services]

    async def health(self, workload: Workload) -> Health:
        ref = _ref(workload)
        tasks = await self._call(f"tasks of {workload.name}", lambda api: api.tasks(filters={"service": [ref]}))
        service_ids = {str(t.get("ServiceID")) for t in tasks} or {ref}
        replaced = replaced_task_ids(tasks)
        with self._tally_lock:
            tally = self._tallies.setdefault(sorted(service_ids)[0], _RestartTally())
            restart_count = tally.update(replaced)
        started_at = running_since(tasks)
        return health_from_state(
            restart_count=restart_count,
            started_at=started_at,
            now=datetime.now(UTC),
            reason=None if started_at is not None else task_problem(tasks),
        )

    async def logs(self, workload: Workload, *, tail: int) -> list[str]:
        ref = _ref(workload)

        def fetch(api: docker.APIClient) -> list[str]:
            # `tail` applies per task: the lines of every task are merged by time, then cut.
            params = {"stdout": 1, "stderr": 1, "tail": tail, "timestamps": 1, "follow": 0}
            response = api._get(api._url("/services/{0}/logs", ref), params=params, timeout=LOGS_TIMEOUT_SECONDS)
            api._raise_for_status(response)
            multiplexed = multiplexed_from_content_type(response.headers.get("Content-Type"))
            return sorted_by_timestamp(decode_log_lines([response.content], multiplexed=multiplexed))

        return last_lines(await self._call(f"logs of {workload.name}", fetch), tail)

    # -- actions --------------------------------------------------------------------------
    async def prepare(self, spec: WorkloadSpec) -> None:
        """What can fail before an old service is removed: the image and the file configs.

        Nodes pull images themselves when they run a task, so nothing is pulled here (a manager may
        run no connector at all); the image must be known to this manager or resolvable in its
        registry with our credentials (`GET /distribution/…`, what `docker service create` asks),
        else the running service is kept and the error is an `ImagePullError`.
        """
        image = str(image_reference(spec.image, self._registry))
        auth = registry_auth(self._registry)

        def check(api: docker.APIClient) -> None:
            try:
                api.inspect_image(image)
                return
            except docker.errors.NotFound:
                pass
            try:
                api.inspect_distribution(image, auth_config=auth)
            except docker.errors.APIError as exc:
                raise ImagePullError(
                    f"{image}: not on this manager and not resolvable in its registry: {explain(exc)}"
                ) from None

        await self._call(f"image {image}", check)
        await self._ensure_configs(spec)

    async def deploy(self, spec: WorkloadSpec, *, start: bool) -> Workload:
        image = str(image_reference(spec.image, self._registry))
        configs = await self._ensure_configs(spec)
        body = service_spec(spec, self._options, image=image, replicas=1 if start else 0, configs=configs)
        auth = registry_auth_header(registry_auth(self._registry))
        # With credentials in X-Registry-Auth the managers keep them for every node's pulls
        # (what `docker service create --with-registry-auth` does); later updates keep them.
        headers = {"X-Registry-Auth": auth} if auth else {}

        def create(api: docker.APIClient) -> dict[str, Any]:
            response = api._post_json(api._url("/services/create"), data=body, headers=headers)
            answer: dict[str, Any] = api._result(response, json=True)
            return answer

        created = await self._call(f"create service {spec.name}", create)
        for warning in created.get("Warnings") or []:
            log.info("engine warning on service create", workload=spec.name, warning=str(warning))
        return Workload(
            name=spec.name,
            state=WorkloadState.PENDING if start else WorkloadState.EXITED,
            labels=dict(body["Labels"]),
            config_hash=spec.config_hash,
            engine_id=str(created.get("ID")) if created.get("ID") else None,
        )

    async def _ensure_configs(self, spec: WorkloadSpec) -> list[dict[str, Any]]:
        if not spec.files:
            return []
        manager_id = spec.labels.get(LABEL_MANAGER)
        if not manager_id:
            raise InvalidWorkloadSpec(f"{spec.name}: no manager label, cannot name its file configs")
        references = []
        for mounted in spec.files:
            name = config_name(manager_id, mounted)
            config_id = await self._call(
                f"config for {mounted.path}", lambda api, n=name, m=mounted: _ensure_config(api, n, m, manager_id)
            )
            references.append(config_reference(mounted, config_id=config_id, name=name))
        return references

    async def start(self, workload: Workload) -> None:
        def decide(api: docker.APIClient, info: Mapping[str, Any]) -> dict[str, Any] | None:
            spec = info["Spec"]
            if (replicas_of(spec) or 0) < 1:
                return with_replicas(spec, 1)
            # Already meant to run: restart it only if no task is running or about to.
            tasks = api.tasks(filters={"service": [info["ID"]]})
            live = ACTIVE_TASK_STATES | {RUNNING_TASK_STATE}
            if any(_task_state(t) in live for t in _newest_per_slot(tasks).values()):
                return None
            return with_forced_restart(spec)

        await self._call(f"start {workload.name}", lambda api: _update_service(api, _ref(workload), decide))

    async def stop(self, workload: Workload) -> None:
        def decide(api: docker.APIClient, info: Mapping[str, Any]) -> dict[str, Any] | None:
            spec = info["Spec"]
            return None if replicas_of(spec) == 0 else with_replicas(spec, 0)

        await self._call(f"stop {workload.name}", lambda api: _update_service(api, _ref(workload), decide))

    async def remove(self, workload: Workload) -> None:
        def delete(api: docker.APIClient) -> None:
            try:
                info = api.inspect_service(_ref(workload))
            except docker.errors.NotFound:
                return
            try:
                api.remove_service(info["ID"])
            except docker.errors.NotFound:
                return
            # Our file configs go with their last user; one still used elsewhere refuses (kept).
            for name in config_names_of(info.get("Spec") or {}):
                try:
                    api.remove_config(name)
                except docker.errors.APIError:
                    pass

        await self._call(f"remove {workload.name}", delete)


def _update_service(
    api: docker.APIClient,
    ref: str,
    decide: Callable[[docker.APIClient, Mapping[str, Any]], dict[str, Any] | None],
) -> None:
    """Read the service, let `decide` give the new spec (None: nothing to do), send it with the
    version read; on "update out of sequence" start again from a fresh read."""
    for attempt in range(1, UPDATE_ATTEMPTS + 1):
        info = api.inspect_service(ref)
        body = decide(api, info)
        if body is None:
            return
        version = int(info["Version"]["Index"])
        response = api._post_json(api._url("/services/{0}/update", info["ID"]), data=body, params={"version": version})
        try:
            api._raise_for_status(response)
            return
        except docker.errors.APIError as exc:
            if OUT_OF_SEQUENCE not in explain(exc) or attempt == UPDATE_ATTEMPTS:
                raise
            log.debug("service changed meanwhile, updating again", service=ref, attempt=attempt)
            time.sleep(UPDATE_RETRY_DELAY * attempt)


def _ensure_config(api: docker.APIClient, name: str, mounted: MountedFile, manager_id: str) -> str:
    """Id of the config `name`, created with the file's content when missing."""
    for _ in range(2):
        # The name filter matches prefixes: compare exactly.
        for config in api.configs(filters={"name": name}):
            if (config.get("Spec") or {}).get("Name") == name:
                return str(config["ID"])
        try:
            created = api.create_config(name, mounted.content.encode("utf-8"), labels={LABEL_MANAGER: manager_id})
            return str(created["ID"])
        except docker.errors.APIError as exc:
            if exc.status_code != 409:  # 409: created meanwhile by another action; read it again
                raise
    raise OrchestratorUnavailable(f"config {name} keeps being created and removed")


def _ref(workload: Workload) -> str:
    return workload.engine_id or workload.name
