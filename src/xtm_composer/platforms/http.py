"""The shared httpx client factory: timeouts, TLS verification and proxies from settings."""

from __future__ import annotations

import httpx

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.errors import PlatformUnavailable

USER_AGENT = "xtm-composer"


def build_async_client(
    settings: PlatformSettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    event_hooks: dict[str, list] | None = None,
) -> httpx.AsyncClient:
    timeout = httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout)
    proxy = None
    if settings.with_proxy:
        proxy = settings.https_proxy if settings.url.startswith("https://") else settings.http_proxy
    return httpx.AsyncClient(
        base_url=settings.url,
        timeout=timeout,
        # TLS is verified unless the operator explicitly opted out for this platform.
        verify=not settings.unsecured_certificate,
        # `with_proxy: false` means the process's own *_PROXY variables are ignored too.
        trust_env=settings.with_proxy and proxy is None,
        proxy=proxy,
        headers={"Authorization": f"Bearer {settings.token}", "User-Agent": USER_AGENT},
        transport=transport,
        event_hooks=event_hooks,
    )


def describe_transport_error(exc: httpx.HTTPError) -> PlatformUnavailable:
    """Translate an httpx failure into our error, naming the cause without request details."""
    if isinstance(exc, httpx.TimeoutException):
        return PlatformUnavailable(f"platform request timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return PlatformUnavailable(f"cannot connect to the platform: {exc}")
    return PlatformUnavailable(f"platform request failed: {type(exc).__name__}: {exc}")
