"""The emulator's HTTP server: a Starlette app served by uvicorn, in a thread or in the foreground.

`POST /graphql` is the OpenCTI API (PROTOCOL.md §3), `/admin/...` the admin API, `GET /health` a
liveness probe. While the state's outage switch is on, `/graphql` answers 502 with an HTML page,
as a reverse proxy in front of a platform that is down would.

`EmulatorServer` binds its own socket so the actual port is known before serving (port 0 picks a
free one) and can be stopped and started again on the same port with the same state, which is how
tests make the platform disappear and come back. Assigning `server.state` swaps in another state
while serving (a reinstalled platform at the same URL; also lets tests share one server).
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route

from xtm_composer.emulator.admin import admin_routes, request_state
from xtm_composer.emulator.graphql_api import GraphQLEndpoint
from xtm_composer.emulator.rest_api import rest_routes
from xtm_composer.emulator.state import EmulatorState

OUTAGE_PAGE = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
START_TIMEOUT_SECONDS = 10.0
STOP_TIMEOUT_SECONDS = 10.0


def create_app(state: EmulatorState) -> Starlette:
    """The ASGI application serving `state`; `app.state.emulator` may later be replaced by another."""

    async def graphql(request: Request) -> Response:
        current = request_state(request)
        if current.kind != "opencti":
            return JSONResponse({"error": "this emulator serves the OpenAEV REST API"}, status_code=404)
        if current.outage:
            current.count_call("outage_rejections")
            return HTMLResponse(OUTAGE_PAGE, status_code=502)
        body = await request.body()
        # In a worker thread: a slow answer (the "slow" fault) must not stall the other requests.
        answer = await run_in_threadpool(GraphQLEndpoint(current).handle, body, request.headers.get("authorization"))
        return JSONResponse(answer.body, status_code=answer.status)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "version": request_state(request).version})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code, headers=exc.headers)

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Mount("/admin", routes=admin_routes()),
            *rest_routes(),
        ],
        exception_handlers={HTTPException: http_error},
    )
    app.state.emulator = state
    return app


def _client_host(host: str) -> str:
    """Where a local client should connect for a server bound to `host`."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must be IPPROTO_TCP: asyncio only disables Nagle on sockets that say so, and with Nagle on
    # every response body waits ~40 ms for the client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class EmulatorServer:
    """Serves one `EmulatorState` with uvicorn in a background thread.

    `start()` returns once connections are accepted; `url` then holds the actual address. After
    `stop()`, `start()` binds the same port again. If the state has no public URL yet, the server's
    URL becomes the `OPENCTI_URL` served to connectors.
    """

    def __init__(self, state: EmulatorState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._app = create_app(state)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def state(self) -> EmulatorState:
        """The state served now (see the setter)."""
        state = self._app.state.emulator
        assert isinstance(state, EmulatorState)
        return state

    @state.setter
    def state(self, state: EmulatorState) -> None:
        """Serve another state from the next request on, as a reinstalled platform at the same URL."""
        self._app.state.emulator = state
        if self.running and state.public_url is None:
            state.public_url = self.url

    @property
    def url(self) -> str:
        """Base URL (no trailing slash), e.g. `http://127.0.0.1:41234`."""
        return f"http://{_client_host(self.host)}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> EmulatorServer:
        if self.running:
            return self
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self._app, log_level="warning", lifespan="off", access_log=False, timeout_graceful_shutdown=1
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"emulator-{self.port}", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                server.should_exit = True
                sock.close()
                raise RuntimeError(f"the emulator did not start on {self.url}")
            time.sleep(0.01)
        if self.state.public_url is None:
            self.state.public_url = self.url
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection; return when the thread has ended."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(STOP_TIMEOUT_SECONDS)
        if thread.is_alive():
            server.force_exit = True
            thread.join(STOP_TIMEOUT_SECONDS)
        self._server = self._thread = None

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve_forever(state: EmulatorState, *, host: str = "127.0.0.1", port: int = 4000, log_level: str = "info") -> None:
    """Serve in the foreground until SIGINT/SIGTERM (the `emulator serve` command).

    Binds before serving, so a taken port raises `OSError` instead of a log line and an exit.
    """
    sock = _bind(host, port)
    if state.public_url is None:
        state.public_url = f"http://{_client_host(host)}:{port}"
    config = uvicorn.Config(create_app(state), log_level=log_level, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
