"""The monitoring endpoint: `/healthz` (loops alive), `/readyz` (platforms registered, engines
reachable), `/metrics` (Prometheus text). Off by default; served inside the daemon's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import socket

import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from xtm_composer.config.settings import MonitoringSettings
from xtm_composer.errors import ConfigurationError
from xtm_composer.telemetry import Telemetry


def create_monitor_app(telemetry: Telemetry) -> Starlette:
    grace = telemetry.alert_settings.stalled_after

    async def healthz(_request: Request) -> Response:
        stale = telemetry.health.stale_loops(grace=grace)
        body = {
            "status": "ok" if not stale else "stalled",
            "stalled_loops": stale,
            "loops": sorted(telemetry.health.beats),
        }
        return JSONResponse(body, status_code=200 if not stale else 503)

    async def readyz(_request: Request) -> Response:
        health = telemetry.health
        body = {"ready": health.ready(), "registered": health.registered, "orchestrator_reachable": health.engine_ok}
        return JSONResponse(body, status_code=200 if health.ready() else 503)

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(telemetry.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(
        routes=[
            Route("/healthz", healthz, methods=["GET"]),
            Route("/readyz", readyz, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ]
    )


class MonitorServer:
    """Binds at construction (a taken port is a start-up error), serves as an asyncio task."""

    def __init__(self, settings: MonitoringSettings, telemetry: Telemetry) -> None:
        try:
            self._socket = socket.create_server((settings.host, settings.port))
        except OSError as exc:
            raise ConfigurationError(
                f"manager.monitoring: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}"
            ) from None
        self.port = self._socket.getsockname()[1]
        config = uvicorn.Config(create_monitor_app(telemetry), log_level="warning", access_log=False, lifespan="off")
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._socket]), name="monitoring"
        )

    async def stop(self) -> None:
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, timeout=5)
        self._socket.close()
