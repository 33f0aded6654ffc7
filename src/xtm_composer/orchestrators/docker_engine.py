"""Docker orchestrator (docker-py): one container per connector.

Engine calls are blocking, so each runs in a worker thread. Observation is bulk: one
`GET /containers/json` filtered on our manager label per pass; the config hash comes from a
label we add, or — for containers made by the Rust composer — from their env, read once per
container id (a container's env never changes) and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import docker
import docker.errors

from xtm_composer.config.settings import DockerSettings, RegistrySettings
from xtm_composer.domain import (
    LABEL_CONFIG_HASH,
    LABEL_MANAGER,
    Health,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from xtm_composer.errors import (
    ImagePullError,
    OrchestratorUnavailable,
    WorkloadNotFound,
)
from xtm_composer.observability import get_logger
from xtm_composer.orchestrators.docker_client import EngineConnection, explain
from xtm_composer.orchestrators.docker_common import ContainerRows, parse_docker_time
from xtm_composer.orchestrators.docker_options import (
    ImageReference,
    host_config_kwargs,
    image_reference,
    registry_auth,
)
from xtm_composer.orchestrators.files import MountedFileStore
from xtm_composer.orchestrators.health import health_from_state

log = get_logger(__name__)
T = TypeVar("T")

STOP_TIMEOUT_SECONDS = 10


class DockerOrchestrator:
    """Runs connectors as containers on one Docker Engine."""

    def __init__(
        self,
        *,
        options: DockerSettings | None = None,
        registry: RegistrySettings | None = None,
        files_directory: Path | None = None,
        client_factory: Callable[[], docker.APIClient] | None = None,
    ) -> None:
        self._options = options or DockerSettings()
        self._registry = registry
        self._files = MountedFileStore(files_directory)
        self._engine = EngineConnection(client_factory)
        self._rows = ContainerRows()

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
        rows = await self._call(
            "list containers",
            lambda api: api.containers(all=True, filters={"label": f"{LABEL_MANAGER}={manager_id}"}),
        )
        if not isinstance(rows, list):
            raise OrchestratorUnavailable("list containers: unexpected answer from the engine")
        for container_id in self._rows.to_inspect(rows):
            try:
                info = await self._call("inspect container", lambda api, cid=container_id: api.inspect_container(cid))
            except WorkloadNotFound:
                continue  # removed since the listing
            self._rows.learn(container_id, info)
        return self._rows.workloads(rows)

    async def health(self, workload: Workload) -> Health:
        info = await self._call(f"inspect {workload.name}", lambda api: api.inspect_container(_ref(workload)))
        state = info.get("State") or {}
        return health_from_state(
            restart_count=int(info.get("RestartCount") or 0),
            started_at=parse_docker_time(state.get("StartedAt")),
            now=datetime.now(UTC),
        )

    async def logs(self, workload: Workload, *, tail: int) -> list[str]:
        raw = await self._call(
            f"logs of {workload.name}",
            lambda api: api.logs(_ref(workload), stdout=True, stderr=True, tail=tail, timestamps=False),
        )
        text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else str(raw)
        return [line for line in text.splitlines() if line.strip()][-tail:]

    # -- actions --------------------------------------------------------------------------
    async def prepare(self, spec: WorkloadSpec) -> None:
        await self._ensure_image(image_reference(spec.image, self._registry))

    async def deploy(self, spec: WorkloadSpec, *, start: bool) -> Workload:
        image = image_reference(spec.image, self._registry)
        await self._ensure_image(image)
        labels = {**spec.labels, LABEL_CONFIG_HASH: spec.config_hash}
        sources = self._files.materialise(spec.files)
        kwargs = host_config_kwargs(self._options, files=spec.files, file_sources=sources)

        def create(api: docker.APIClient) -> dict[str, Any]:
            return api.create_container(
                image=str(image),
                name=spec.name,
                environment=[f"{key}={value}" for key, value in spec.env],
                labels=labels,
                host_config=api.create_host_config(**kwargs),
            )

        created = await self._call(f"create {spec.name}", create)
        container_id = created["Id"]
        self._rows.remember(container_id, spec.config_hash)
        workload = Workload(
            name=spec.name,
            state=WorkloadState.CREATED,
            labels=labels,
            config_hash=spec.config_hash,
            engine_id=container_id,
        )
        if start:
            await self.start(workload)
        return workload

    async def _ensure_image(self, image: ImageReference) -> None:
        try:
            await self._call(f"inspect image {image}", lambda api: api.inspect_image(str(image)))
            return
        except WorkloadNotFound:
            pass
        auth = registry_auth(self._registry)

        def pull(api: docker.APIClient) -> None:
            # An answer from the engine, even a 5xx, is the pull failing (registry, auth, name),
            # not the engine being down. Errors can also arrive inside a 200 stream.
            try:
                stream = api.pull(
                    image.repository, tag=image.digest or image.tag, stream=True, decode=True, auth_config=auth
                )
                for event in stream:
                    if isinstance(event, dict) and event.get("error"):
                        raise ImagePullError(f"pull {image}: {event['error']}")
            except docker.errors.APIError as exc:
                raise ImagePullError(f"pull {image}: {explain(exc)}") from None

        await self._call(f"pull {image}", pull)

    async def start(self, workload: Workload) -> None:
        if workload.state is WorkloadState.PAUSED:  # paused behind our back: resume it
            await self._call(f"unpause {workload.name}", lambda api: api.unpause(_ref(workload)))
            return
        await self._call(f"start {workload.name}", lambda api: api.start(_ref(workload)))

    async def stop(self, workload: Workload) -> None:
        await self._call(f"stop {workload.name}", lambda api: api.stop(_ref(workload), timeout=STOP_TIMEOUT_SECONDS))

    async def remove(self, workload: Workload) -> None:
        try:
            await self._call(f"remove {workload.name}", lambda api: api.remove_container(_ref(workload), force=True))
        except WorkloadNotFound:
            pass


def _ref(workload: Workload) -> str:
    return workload.engine_id or workload.name
