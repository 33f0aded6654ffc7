"""Mutual TLS and pinned trust against a local TLS server that requires client certificates."""

from __future__ import annotations

import socket
import ssl
import threading
import time

import pytest
import trustme
import uvicorn

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.emulator.server import create_app
from xtm_composer.emulator.state import EmulatorState
from xtm_composer.errors import ConfigurationError, PlatformTLSError, PlatformUnavailable
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pki")
    ca, other_ca = trustme.CA(), trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    client = ca.issue_cert("xtm-composer.client")
    files = {
        "ca": ca.cert_pem,
        "other_ca": other_ca.cert_pem,
        "server_cert": server.cert_chain_pems[0],
        "server_key": server.private_key_pem,
        "client_cert": client.cert_chain_pems[0],
        "client_key": client.private_key_pem,
    }
    paths = {}
    for name, blob in files.items():
        paths[name] = directory / f"{name}.pem"
        blob.write_to_path(str(paths[name]))
    return paths


@pytest.fixture(scope="module")
def mtls_server(pki):
    state = EmulatorState(token="T")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        create_app(state),
        log_level="error",
        ssl_certfile=str(pki["server_cert"]),
        ssl_keyfile=str(pki["server_key"]),
        ssl_ca_certs=str(pki["ca"]),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.02)
    yield f"https://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def client(url, **tls):
    return OpenCTIClient(
        build_async_client(PlatformSettings(enable=True, url=url, token="T", connect_timeout=3, **tls))
    )


async def test_works_with_the_configured_client_certificate_and_pinned_ca(mtls_server, pki):
    c = client(
        mtls_server, tls_ca_bundle=pki["ca"], tls_client_cert=pki["client_cert"], tls_client_key=pki["client_key"]
    )
    assert await c.version() == "6.8.3"


async def test_refused_cleanly_without_a_client_certificate(mtls_server, pki):
    c = client(mtls_server, tls_ca_bundle=pki["ca"])
    with pytest.raises(PlatformUnavailable) as info:
        await c.version()
    assert "client certificate" in str(info.value)


async def test_a_wrong_ca_is_a_tls_error_not_a_silent_pass(mtls_server, pki):
    c = client(
        mtls_server, tls_ca_bundle=pki["other_ca"], tls_client_cert=pki["client_cert"], tls_client_key=pki["client_key"]
    )
    with pytest.raises(PlatformTLSError, match="verification failed"):
        await c.version()


async def test_the_system_trust_store_does_not_accept_a_private_ca(mtls_server, pki):
    with pytest.raises(PlatformTLSError):
        await client(mtls_server).version()


def test_token_file_is_read_and_wins(tmp_path):
    token = tmp_path / "token"
    token.write_text("from-file\n")
    http = build_async_client(PlatformSettings(enable=True, url="http://x", token="inline", token_file=token))
    assert http.headers["authorization"] == "Bearer from-file"


@pytest.mark.parametrize("kind", ["missing-token-file", "missing-cert"])
def test_unusable_tls_or_token_files_are_configuration_errors(tmp_path, pki, kind):
    settings = {
        "missing-token-file": {"token_file": tmp_path / "nope"},
        "missing-cert": {"tls_client_cert": tmp_path / "nope.pem", "tls_client_key": pki["client_key"]},
    }[kind]
    with pytest.raises(ConfigurationError):
        build_async_client(PlatformSettings(enable=True, url="https://x", token="t", **settings))
