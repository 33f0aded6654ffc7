"""The shared httpx client factory: timeouts, TLS verification and proxies from settings."""

from __future__ import annotations

import httpx

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.errors import PlatformTLSError, PlatformUnavailable
from xtm_composer.proxy import ProxyConfig, build_proxy_config

USER_AGENT = "xtm-composer"
CONNECTION_POOL_SIZE = 8


def bypasses_proxy(url: str, no_proxy: str | None) -> bool:
    """True when the platform host matches a NO_PROXY entry (exact host or domain suffix, or `*`)."""
    host = (httpx.URL(url).host or "").lower()
    for raw in (no_proxy or "").split(","):
        entry = raw.strip().lower().lstrip("*").split(":")[0]
        if raw.strip() == "*" or (entry and (host == entry.lstrip(".") or host.endswith("." + entry.lstrip(".")))):
            return True
    return False


def build_async_client(
    settings: PlatformSettings,
    *,
    proxy_config: ProxyConfig | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    event_hooks: dict[str, list] | None = None,
) -> httpx.AsyncClient:
    proxy_config = proxy_config or build_proxy_config(settings, platform="platform")
    timeout = httpx.Timeout(settings.request_timeout, connect=settings.connect_timeout)
    proxy = None
    if proxy_config.enabled and not bypasses_proxy(settings.url, proxy_config.no_proxy):
        proxy = proxy_config.https_proxy if settings.url.startswith("https://") else proxy_config.http_proxy
    return httpx.AsyncClient(
        base_url=settings.url,
        timeout=timeout,
        # A small pool: the executor bounds concurrency anyway, and httpcore's pool bookkeeping
        # grows with the number of open connections.
        limits=httpx.Limits(max_connections=CONNECTION_POOL_SIZE, max_keepalive_connections=CONNECTION_POOL_SIZE),
        # TLS is verified unless the operator explicitly opted out for this platform; a proxy CA
        # bundle is trusted in addition to the system CAs.
        verify=proxy_config.ssl_context(verify=not settings.unsecured_certificate),
        # The process's own *_PROXY variables are never used: `with_proxy` and its keys decide.
        trust_env=False,
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
        if "CERTIFICATE_VERIFY_FAILED" in str(exc) or "certificate verify failed" in str(exc):
            return PlatformTLSError(f"TLS certificate verification failed: {exc}")
        return PlatformUnavailable(f"cannot connect to the platform: {exc}")
    return PlatformUnavailable(f"platform request failed: {type(exc).__name__}: {exc}")
