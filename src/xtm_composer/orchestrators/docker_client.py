"""The docker-py connection shared by the Docker and Swarm orchestrators.

Built lazily and rebuilt after failures, so an engine that is down at start-up or restarted
later is picked up again without restarting the composer. Engine calls block: each runs in a
worker thread. Errors are translated here, in one place, into the project's own.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import docker
import docker.errors
import requests

from xtm_composer.errors import (
    OrchestratorError,
    OrchestratorForbidden,
    OrchestratorUnavailable,
    WorkloadConflict,
    WorkloadNotFound,
)

T = TypeVar("T")


def explain(exc: docker.errors.APIError) -> str:
    return str(exc.explanation or exc)


def api_client_from_env() -> docker.APIClient:
    return docker.APIClient(version="auto", **docker.utils.kwargs_from_env())


class EngineConnection:
    def __init__(self, client_factory: Callable[[], docker.APIClient] | None = None) -> None:
        self._client_factory = client_factory or api_client_from_env
        self._client: docker.APIClient | None = None
        self._lock = threading.Lock()
        self.api_calls = 0  # every HTTP request made to the engine (for benchmarks and tests)

    def api(self) -> docker.APIClient:
        client = self._client
        if client is not None:
            return client
        # Building may block (it asks the engine its API version): never while holding the lock
        # that `drop()` (called on shutdown from the event loop) needs.
        try:
            fresh = self._client_factory()
        except docker.errors.DockerException as exc:
            raise OrchestratorUnavailable(f"Docker Engine unreachable: {exc}") from None
        fresh.hooks["response"].append(self._count_call)
        with self._lock:
            if self._client is None:
                self._client = fresh
                return fresh
            current = self._client
        fresh.close()
        return current

    def _count_call(self, response: requests.Response, *_args: Any, **_kwargs: Any) -> requests.Response:
        self.api_calls += 1
        return response

    async def call(self, what: str, fn: Callable[[docker.APIClient], T]) -> T:
        def run() -> T:
            return fn(self.api())

        try:
            return await asyncio.to_thread(run)
        except OrchestratorError:
            raise
        except docker.errors.NotFound as exc:
            raise WorkloadNotFound(f"{what}: {explain(exc)}") from None
        except docker.errors.APIError as exc:
            if exc.status_code == 409:
                raise WorkloadConflict(f"{what}: {explain(exc)}") from None
            if exc.status_code in (401, 403):  # an authorization plugin or proxy in front of the engine
                raise OrchestratorForbidden(f"{what}: {explain(exc)}") from None
            if exc.status_code is not None and exc.status_code >= 500:
                # e.g. 503 "This node is not a swarm manager", with the engine's words.
                raise OrchestratorUnavailable(f"{what}: {explain(exc)}") from None
            raise OrchestratorError(f"{what}: {explain(exc)}") from None
        except (requests.RequestException, docker.errors.DockerException, OSError) as exc:
            self.drop()
            raise OrchestratorUnavailable(f"{what}: Docker Engine unreachable ({type(exc).__name__})") from None

    def drop(self) -> None:
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()
