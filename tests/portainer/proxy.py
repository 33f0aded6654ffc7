"""A stand-in for Portainer: checks `X-API-KEY` and forwards its Docker routes to the real engine.

Serves `/api/endpoints/{env_id}/docker/{path}` like Portainer's Docker proxy, answers errors the
way Portainer does (`{"message", "details"}`), streams the engine's answers back (cut into small
chunks, so clients meet frames and JSON lines split across reads), and can serve TLS.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

FORWARDED_HEADERS = ("content-type", "x-registry-auth")
RETURNED_HEADERS = ("content-type", "docker-experimental", "api-version", "ostype")


def engine_transport() -> tuple[httpx.AsyncBaseTransport, str]:
    """Transport and base URL of the engine DOCKER_HOST names (unix socket or tcp)."""
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://"):
        return httpx.AsyncHTTPTransport(uds=host[len("unix://") :]), "http://docker"
    return httpx.AsyncHTTPTransport(), host.replace("tcp://", "http://", 1)


@dataclass
class PortainerProxy:
    api_key: str
    env_id: str = "3"
    chunk_size: int = 7
    certfile: Path | None = None
    keyfile: Path | None = None
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    port: int = 0
    _server: uvicorn.Server | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        scheme = "https" if self.certfile else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def app(self) -> Starlette:
        transport, base_url = engine_transport()
        engine = httpx.AsyncClient(transport=transport, base_url=base_url, timeout=60)

        async def forward(request: Request) -> Response:
            if request.headers.get("x-api-key") != self.api_key:
                return JSONResponse({"message": "Unauthorized", "details": "Invalid API key"}, status_code=401)
            if request.path_params["env_id"] != self.env_id:
                return JSONResponse(
                    {
                        "message": "Unable to find an environment with the specified identifier inside the database",
                        "details": "Object not found inside the database",
                    },
                    status_code=404,
                )
            path = "/" + request.path_params["path"]
            headers = {name: request.headers[name] for name in FORWARDED_HEADERS if name in request.headers}
            self.requests.append((request.method, path, headers))
            target = f"{path}?{request.url.query}" if request.url.query else path
            upstream = await engine.send(
                engine.build_request(request.method, target, headers=headers, content=await request.body()),
                stream=True,
            )

            async def rechunked():
                async for chunk in upstream.aiter_raw():
                    for start in range(0, len(chunk), self.chunk_size):
                        yield chunk[start : start + self.chunk_size]

            returned = {name: upstream.headers[name] for name in RETURNED_HEADERS if name in upstream.headers}
            return StreamingResponse(
                rechunked(),
                status_code=upstream.status_code,
                headers=returned,
                background=BackgroundTask(upstream.aclose),
            )

        methods = ["GET", "POST", "PUT", "DELETE", "HEAD"]
        return Starlette(routes=[Route("/api/endpoints/{env_id}/docker/{path:path}", forward, methods=methods)])

    def start(self) -> PortainerProxy:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            log_level="warning",
            lifespan="off",
            access_log=False,
            timeout_graceful_shutdown=1,
            ssl_certfile=str(self.certfile) if self.certfile else None,
            ssl_keyfile=str(self.keyfile) if self.keyfile else None,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="portainer-proxy")
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the Portainer test proxy did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = self._thread = None
