"""The shared httpx client factory: timeouts, TLS verification and proxies from settings."""

from __future__ import annotations

import ssl

import httpx

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.errors import ConfigurationError, PlatformTLSError, PlatformUnavailable
from xtm_composer.proxy import ProxyConfig, build_proxy_config

USER_AGENT = "xtm-composer"
CONNECTION_POOL_SIZE = 8


def read_token(settings: PlatformSettings) -> str:
    """The API token: from `token_file` when set (a mounted secret), else `token`."""
    if settings.token_file is None:
        return settings.token
    try:
        token = settings.token_file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the token file {settings.token_file}: {exc}") from None
    if not token:
        raise ConfigurationError(f"the token file {settings.token_file} is empty")
    return token


def tls_context(settings: PlatformSettings, proxy_config: ProxyConfig) -> ssl.SSLContext | bool:
    """Verification (on unless explicitly disabled), pinned CA bundle, client certificate (mTLS)."""
    verify = not settings.unsecured_certificate
    if settings.tls_ca_bundle is None and settings.tls_client_cert is None:
        return proxy_config.ssl_context(verify=verify)
    try:
        if settings.tls_ca_bundle is not None:
            context = ssl.create_default_context(cafile=str(settings.tls_ca_bundle))
        else:
            context = ssl.create_default_context()
        if proxy_config.enabled and proxy_config.ca_bundle:
            context.load_verify_locations(cadata=proxy_config.ca_bundle)
        if settings.tls_client_cert is not None:
            context.load_cert_chain(str(settings.tls_client_cert), str(settings.tls_client_key))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"TLS files of {settings.url}: {exc}") from None
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


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
    token = read_token(settings)
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
        verify=tls_context(settings, proxy_config),
        # The process's own *_PROXY variables are never used: `with_proxy` and its keys decide.
        trust_env=False,
        proxy=proxy,
        headers={"Authorization": f"Bearer {token}", "User-Agent": USER_AGENT},
        transport=transport,
        event_hooks=event_hooks,
    )


def _causes(exc: BaseException) -> str:
    """The messages of an exception and of what caused it (TLS alerts hide in the chain)."""
    texts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(texts) < 8:
        texts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    return " <- ".join(texts)


def _is_https(exc: httpx.HTTPError) -> bool:
    try:
        return exc.request.url.scheme == "https"
    except RuntimeError:  # no request attached
        return False


def describe_transport_error(exc: httpx.HTTPError) -> PlatformUnavailable:
    """Translate an httpx failure into our error, naming the cause without request details."""
    chain = _causes(exc)
    if "CERTIFICATE_VERIFY_FAILED" in chain or "certificate verify failed" in chain:
        return PlatformTLSError(f"TLS certificate verification failed: {exc}")
    if "CERTIFICATE_REQUIRED" in chain.upper() or "BAD_CERTIFICATE" in chain.upper():
        return PlatformTLSError(
            "the platform refused the TLS handshake: it requires a (valid) client certificate "
            "(tls_client_cert / tls_client_key)"
        )
    if isinstance(exc, httpx.TimeoutException):
        return PlatformUnavailable(f"platform request timed out ({type(exc).__name__})")
    if _is_https(exc) and isinstance(exc, (httpx.ReadError, httpx.WriteError, httpx.RemoteProtocolError)):
        # With TLS 1.3 a server refusing the client certificate just closes the connection.
        return PlatformUnavailable(
            f"the platform closed the TLS connection ({chain}); a server requiring client certificates does "
            "this when none (or a wrong one) is given: check tls_client_cert / tls_client_key"
        )
    if isinstance(exc, httpx.ConnectError):
        return PlatformUnavailable(f"cannot connect to the platform: {exc}")
    return PlatformUnavailable(f"platform request failed: {chain}")
