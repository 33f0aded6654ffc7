"""Portainer orchestrator (Docker environment): the Docker Engine API through Portainer, over httpx.

Portainer proxies an environment's Docker Engine API under
`{api}/api/endpoints/{env_id}/docker/{api_version}/…`, authenticated by the `X-API-KEY` header.
One container per connector, as with Docker: same labels, hash label and env, on-failure restart
policy (so crashes show as restarts), plus the `stack` label Portainer groups containers by and
the `network_mode` of its settings.

TLS is verified unless the caller passes `verify=False` (`unsecured_certificate: true`); the Rust
composer never verified it. Every non-2xx answer becomes a typed error carrying Portainer's (or
Docker's) own message, in `_error`; network failures are translated in `_stream`. Logs are Docker
frames demultiplexed by `docker_logs`; a pull that fails inside its 200 stream is an error too.
"""

from __future__ import annotations

import contextlib
import json
import ssl
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from xtm_composer.config.settings import DockerSettings, PortainerSettings, RegistrySettings
from xtm_composer.domain import (
    LABEL_CONFIG_HASH,
    LABEL_MANAGER,
    Health,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from xtm_composer.errors import (
    ConfigurationError,
    ImagePullError,
    OrchestratorError,
    OrchestratorForbidden,
    OrchestratorUnavailable,
    WorkloadConflict,
    WorkloadNotFound,
)
from xtm_composer.observability import get_logger
from xtm_composer.orchestrators.docker_common import (
    ContainerRows,
    parse_docker_time,
    registry_auth_header,
)
from xtm_composer.orchestrators.docker_logs import LogDecoder, last_lines, multiplexed_from_content_type
from xtm_composer.orchestrators.docker_options import ImageReference, host_config, image_reference, registry_auth
from xtm_composer.orchestrators.files import MountedFileStore
from xtm_composer.orchestrators.health import health_from_state

log = get_logger(__name__)

API_KEY_HEADER = "X-API-KEY"
STACK_LABEL = "com.docker.compose.project"  # what Portainer (and the Rust composer) group a stack by
STOP_TIMEOUT_SECONDS = 10
CONNECT_TIMEOUT_SECONDS = 10
MESSAGE_LIMIT = 300  # characters of an error body kept in a message (an HTML error page is long)


def portainer_base_url(settings: PortainerSettings) -> str:
    """`{api}/api/endpoints/{env_id}/docker/{api_version}`, or a one-line configuration error."""
    where = "daemon.portainer"
    api = (settings.api or "").strip().rstrip("/")
    if not api.startswith(("http://", "https://")):
        raise ConfigurationError(f"{where}.api: must be Portainer's URL, starting with http:// or https://")
    if not settings.api_key:
        raise ConfigurationError(f"{where}.api_key: required (a Portainer access token)")
    if settings.env_id is None or str(settings.env_id).strip() == "":
        raise ConfigurationError(f"{where}.env_id: required (the Portainer environment id)")
    if settings.env_type != "docker":
        raise ConfigurationError(f"{where}.env_type: only 'docker' environments are supported")
    version = settings.api_version.strip()
    version = version if version.startswith("v") else f"v{version}"
    env_id = quote(str(settings.env_id).strip(), safe="")
    return f"{api}/api/endpoints/{env_id}/docker/{version}"


def engine_api_version(settings: PortainerSettings) -> str:
    return settings.api_version.strip().lstrip("v")


def container_labels(spec: WorkloadSpec, settings: PortainerSettings) -> dict[str, str]:
    labels = {**spec.labels, LABEL_CONFIG_HASH: spec.config_hash}
    if settings.stack:
        labels[STACK_LABEL] = settings.stack
    return labels


def container_create_body(
    spec: WorkloadSpec,
    settings: PortainerSettings,
    *,
    image: str,
    file_sources: Mapping[str, Path] | None = None,
) -> dict[str, Any]:
    """The exact body of `POST /containers/create` for one connector (no I/O)."""
    options = DockerSettings(network_mode=settings.network_mode)
    return {
        "Image": image,
        "Env": [f"{key}={value}" for key, value in spec.env],
        "Labels": container_labels(spec, settings),
        "HostConfig": host_config(
            options, api_version=engine_api_version(settings), files=spec.files, file_sources=dict(file_sources or {})
        ),
    }


def _message(body: bytes) -> tuple[str, bool]:
    """(the answer's message, whether Portainer itself wrote it rather than the Docker Engine).

    Portainer's errors are `{"message", "details"}`; the engine's are `{"message"}` alone.
    """
    text = body.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and ("message" in data or "details" in data):
        message = str(data.get("message") or "").strip()
        details = str(data.get("details") or "").strip()
        if details and details.lower() != message.lower():
            message = f"{message}: {details}" if message else details
        return message[:MESSAGE_LIMIT], "details" in data
    return (" ".join(text.split())[:MESSAGE_LIMIT] or "(empty answer)"), False


def portainer_error(what: str, status: int, body: bytes, *, env_id: str, pull: bool = False) -> OrchestratorError:
    """The typed error for one non-2xx answer. With `pull`, an answer of the engine (not of
    Portainer) is the pull failing — unknown image, registry refusal or unreachable registry."""
    message, from_portainer = _message(body)
    if pull and not from_portainer:
        return ImagePullError(f"{what}: {message} ({status})")
    if status == 401:
        return OrchestratorForbidden(
            f"{what}: Portainer rejected the API key (401 {message}); check daemon.portainer.api_key"
        )
    if status == 403:
        return OrchestratorForbidden(
            f"{what}: Portainer denied access (403 {message}); the API key's user needs access to environment {env_id}"
        )
    if status == 404 and from_portainer:
        # Not the workload missing: Portainer does not know the environment (or the route).
        return OrchestratorError(f"{what}: Portainer answered 404 ({message}); check daemon.portainer.env_id")
    if status == 404:
        return WorkloadNotFound(f"{what}: {message}")
    if status == 409:
        return WorkloadConflict(f"{what}: {message}")
    if status >= 500:
        return OrchestratorUnavailable(f"{what}: Portainer answered {status} ({message})")
    return OrchestratorError(f"{what}: Portainer answered {status} ({message})")


def _tls_failure(exc: BaseException) -> ssl.SSLError | None:
    seen: BaseException | None = exc
    for _ in range(10):
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


class PortainerOrchestrator:
    """Runs connectors as containers of one Portainer Docker environment."""

    def __init__(
        self,
        settings: PortainerSettings,
        registry: RegistrySettings | None = None,
        *,
        verify: bool | ssl.SSLContext = True,
        files_directory: Path | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._env_id = str(settings.env_id)
        self._files = MountedFileStore(files_directory)
        self._client = httpx.AsyncClient(
            base_url=portainer_base_url(settings),
            headers={API_KEY_HEADER: settings.api_key or ""},
            verify=verify,
            transport=transport,
            timeout=httpx.Timeout(timeout, connect=min(timeout, CONNECT_TIMEOUT_SECONDS)),
            follow_redirects=False,
        )
        self._rows = ContainerRows()
        self.api_calls = 0  # every HTTP request sent to Portainer (for benchmarks and tests)

    # -- plumbing -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def _stream(
        self, what: str, method: str, path: str, *, pull: bool = False, **kwargs: Any
    ) -> AsyncIterator[httpx.Response]:
        """One request whose answer is read by the caller; every failure becomes our error."""
        self.api_calls += 1
        try:
            async with self._client.stream(method, path, **kwargs) as response:
                if not (200 <= response.status_code < 300 or response.status_code == 304):
                    body = await response.aread()
                    raise portainer_error(what, response.status_code, body, env_id=self._env_id, pull=pull)
                yield response
        except httpx.HTTPError as exc:
            tls = _tls_failure(exc)
            if tls is not None:
                reason = getattr(tls, "verify_message", None) or getattr(tls, "reason", None) or type(tls).__name__
                raise OrchestratorUnavailable(
                    f"{what}: Portainer's TLS certificate is not trusted ({reason}); add its CA to the system "
                    "trust store, or set unsecured_certificate: true to skip the check"
                ) from None
            raise OrchestratorUnavailable(f"{what}: Portainer unreachable ({type(exc).__name__}: {exc})") from None

    async def _json(self, what: str, method: str, path: str, **kwargs: Any) -> Any:
        async with self._stream(what, method, path, **kwargs) as response:
            body = await response.aread()
        if response.status_code in (204, 304) or not body.strip():
            return None
        try:
            return json.loads(body)
        except ValueError:
            raise OrchestratorUnavailable(f"{what}: Portainer gave an answer that is not JSON") from None

    async def close(self) -> None:
        await self._client.aclose()

    # -- observation ------------------------------------------------------------------------
    async def list_workloads(self, *, manager_id: str) -> list[Workload]:
        filters = json.dumps({"label": [f"{LABEL_MANAGER}={manager_id}"]})
        rows = await self._json("list containers", "GET", "containers/json", params={"all": "1", "filters": filters})
        if not isinstance(rows, list):
            raise OrchestratorUnavailable("list containers: unexpected answer from Portainer")
        for container_id in self._rows.to_inspect(rows):
            try:
                self._rows.learn(container_id, await self._inspect("inspect container", container_id))
            except WorkloadNotFound:
                continue  # removed since the listing
        return self._rows.workloads(rows)

    async def _inspect(self, what: str, ref: str) -> dict[str, Any]:
        info = await self._json(what, "GET", f"containers/{_quoted(ref)}/json")
        if not isinstance(info, dict):
            raise OrchestratorUnavailable(f"{what}: unexpected answer from Portainer")
        return info

    async def health(self, workload: Workload) -> Health:
        info = await self._inspect(f"inspect {workload.name}", _ref(workload))
        state = info.get("State") or {}
        return health_from_state(
            restart_count=int(info.get("RestartCount") or 0),
            started_at=parse_docker_time(state.get("StartedAt")),
            now=datetime.now(UTC),
        )

    async def logs(self, workload: Workload, *, tail: int) -> list[str]:
        params = {"stdout": "1", "stderr": "1", "tail": str(tail), "timestamps": "0", "follow": "0"}
        lines: list[str] = []
        path = f"containers/{_quoted(_ref(workload))}/logs"
        async with self._stream(f"logs of {workload.name}", "GET", path, params=params) as response:
            decoder = LogDecoder(multiplexed=multiplexed_from_content_type(response.headers.get("content-type")))
            async for chunk in response.aiter_bytes():
                lines.extend(decoder.feed(chunk))
            lines.extend(decoder.close())
        return last_lines(lines, tail)

    # -- actions --------------------------------------------------------------------------
    async def prepare(self, spec: WorkloadSpec) -> None:
        """What can fail before an old container is removed: the image pull and the mounted files."""
        await self._ensure_image(image_reference(spec.image, self._registry))
        self._files.materialise(spec.files)

    async def deploy(self, spec: WorkloadSpec, *, start: bool) -> Workload:
        image = image_reference(spec.image, self._registry)
        await self._ensure_image(image)
        sources = self._files.materialise(spec.files)
        body = container_create_body(spec, self._settings, image=str(image), file_sources=sources)
        created = await self._json(
            f"create {spec.name}", "POST", "containers/create", params={"name": spec.name}, json=body
        )
        if not isinstance(created, dict) or not created.get("Id"):
            raise OrchestratorUnavailable(f"create {spec.name}: unexpected answer from Portainer")
        for warning in created.get("Warnings") or []:
            log.info("engine warning on container create", workload=spec.name, warning=str(warning))
        container_id = str(created["Id"])
        self._rows.remember(container_id, spec.config_hash)
        workload = Workload(
            name=spec.name,
            state=WorkloadState.CREATED,
            labels=dict(body["Labels"]),
            config_hash=spec.config_hash,
            engine_id=container_id,
        )
        if start:
            await self.start(workload)
        return workload

    async def _ensure_image(self, image: ImageReference) -> None:
        try:
            await self._json(f"inspect image {image}", "GET", f"images/{quote(str(image), safe='/:@')}/json")
            return
        except WorkloadNotFound:
            pass
        auth = registry_auth_header(registry_auth(self._registry))
        headers = {"X-Registry-Auth": auth} if auth else {}
        params = {"fromImage": image.repository, "tag": image.digest or image.tag or "latest"}
        what = f"pull {image}"
        async with self._stream(what, "POST", "images/create", pull=True, params=params, headers=headers) as answer:
            # The engine answers 200 at once and reports a failed pull inside the stream.
            async for line in answer.aiter_lines():
                error = _pull_error(line)
                if error:
                    raise ImagePullError(f"{what}: {error}")

    async def start(self, workload: Workload) -> None:
        # 304: already running.
        await self._json(f"start {workload.name}", "POST", f"containers/{_quoted(_ref(workload))}/start")

    async def stop(self, workload: Workload) -> None:
        # 304: already stopped. The request waits for the container to stop: give it the time.
        await self._json(
            f"stop {workload.name}",
            "POST",
            f"containers/{_quoted(_ref(workload))}/stop",
            params={"t": str(STOP_TIMEOUT_SECONDS)},
            timeout=httpx.Timeout(STOP_TIMEOUT_SECONDS + 30, connect=CONNECT_TIMEOUT_SECONDS),
        )

    async def remove(self, workload: Workload) -> None:
        try:
            await self._json(
                f"remove {workload.name}",
                "DELETE",
                f"containers/{_quoted(_ref(workload))}",
                params={"force": "1", "v": "0"},
            )
        except WorkloadNotFound:
            pass


def _pull_error(line: str) -> str | None:
    line = line.strip()
    if not line:
        return None
    try:
        event = json.loads(line)
    except ValueError:
        return None
    if not isinstance(event, dict):
        return None
    detail = event.get("errorDetail")
    error = event.get("error") or (detail.get("message") if isinstance(detail, dict) else None)
    return str(error)[:MESSAGE_LIMIT] if error else None


def _ref(workload: Workload) -> str:
    return workload.engine_id or workload.name


def _quoted(ref: str) -> str:
    return quote(ref, safe="")
