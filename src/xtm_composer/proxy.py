"""Proxy settings of one platform: for its HTTP client and for the workloads it runs.

All of it applies only when `with_proxy` is true. `https_proxy_ca` entries (a list, a JSON-array
string, or indexed env keys, already merged into a list by the loader) are inline PEM or file
paths; together they form one CA bundle, given to workloads read-only at `PROXY_CA_PATH`.
"""

from __future__ import annotations

import json
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from xtm_composer.config.settings import PlatformSettings
from xtm_composer.domain import MountedFile
from xtm_composer.errors import ConfigurationError

PROXY_CA_PATH = "/etc/ssl/certs/xtm-proxy-ca.crt"
CA_ENV_KEYS = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "NODE_EXTRA_CA_CERTS", "CURL_CA_BUNDLE")


@dataclass(frozen=True, slots=True)
class ProxyConfig:
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    ca_bundle: str | None = None
    reject_unauthorized: bool = True
    enabled: bool = False

    workload_env: tuple[tuple[str, str], ...] = field(default=(), repr=False)

    def workload_files(self) -> tuple[MountedFile, ...]:
        return (MountedFile(PROXY_CA_PATH, self.ca_bundle),) if self.enabled and self.ca_bundle else ()

    def ssl_context(self, *, verify: bool) -> ssl.SSLContext | bool:
        """TLS trust for the platform client: system CAs plus the proxy CA bundle."""
        if not verify:
            return False
        if not (self.enabled and self.ca_bundle):
            return True
        context = ssl.create_default_context()
        context.load_verify_locations(cadata=self.ca_bundle)
        return context


def _entries(raw: list[str] | str | None, *, key: str) -> list[str]:
    if raw is None:
        return []
    if isinstance(raw, list):
        return [str(item) for item in raw]
    text = raw.strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise ConfigurationError(f"{key}: not a valid JSON array") from None
        if not isinstance(parsed, list):
            raise ConfigurationError(f"{key}: expected a JSON array of PEM texts or file paths")
        return [str(item) for item in parsed]
    return [text] if text else []


def _certificates_text(entry: str, *, key: str) -> str:
    if "-----BEGIN" in entry:
        text = entry.replace("\\n", "\n").replace("\r\n", "\n")
    else:
        try:
            text = Path(entry).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"{key}: cannot read CA file {entry}: {getattr(exc, 'strerror', exc)}") from None
    try:
        certificates = x509.load_pem_x509_certificates(text.encode("utf-8"))
    except ValueError:
        where = "the inline entry" if "-----" in entry else entry
        raise ConfigurationError(f"{key}: no PEM certificate found in {where}") from None
    return "".join(c.public_bytes(Encoding.PEM).decode("ascii") for c in certificates)


def build_proxy_config(settings: PlatformSettings, *, platform: str) -> ProxyConfig:
    if not settings.with_proxy:
        return ProxyConfig()
    key = f"{platform}.https_proxy_ca"
    bundle = "".join(
        _certificates_text(entry, key=f"{key}[{index}]")
        for index, entry in enumerate(_entries(settings.https_proxy_ca, key=key))
    )
    env: list[tuple[str, str]] = []
    if settings.http_proxy:
        env.append(("HTTP_PROXY", settings.http_proxy))
    if settings.https_proxy:
        env.append(("HTTPS_PROXY", settings.https_proxy))
    if settings.no_proxy:
        env.append(("NO_PROXY", settings.no_proxy))
    if bundle:
        env.extend((name, PROXY_CA_PATH) for name in CA_ENV_KEYS)
    if not settings.https_proxy_reject_unauthorized:
        env.append(("NODE_TLS_REJECT_UNAUTHORIZED", "0"))
    return ProxyConfig(
        http_proxy=settings.http_proxy,
        https_proxy=settings.https_proxy,
        no_proxy=settings.no_proxy,
        ca_bundle=bundle or None,
        reject_unauthorized=settings.https_proxy_reject_unauthorized,
        enabled=True,
        workload_env=tuple(env),
    )
