"""Builds the runtime objects from settings: platform clients, orchestrators, runtimes."""

from __future__ import annotations

import ssl
from pathlib import Path

from xtm_composer.config.settings import PlatformSettings, PortainerSettings, Settings
from xtm_composer.daemon import PlatformRuntime, build_runtime
from xtm_composer.domain import PlatformKind
from xtm_composer.errors import ConfigurationError
from xtm_composer.keys import KeySource
from xtm_composer.orchestrators.base import Orchestrator
from xtm_composer.orchestrators.files import default_data_directory
from xtm_composer.platforms.base import Platform
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.openaev import OpenAEVClient
from xtm_composer.platforms.opencti import OpenCTIClient
from xtm_composer.proxy import ProxyConfig, build_proxy_config
from xtm_composer.status_file import status_path
from xtm_composer.telemetry import Telemetry


def build_orchestrator(kind: PlatformKind, settings: PlatformSettings, *, data_directory: Path | None) -> Orchestrator:
    """The orchestrator of one platform, with that platform's own daemon and registry settings."""
    daemon = settings.daemon
    if daemon.selector == "docker":
        from xtm_composer.orchestrators.docker_engine import DockerOrchestrator

        return DockerOrchestrator(options=daemon.docker, registry=daemon.registry, files_directory=data_directory)
    if daemon.selector == "kubernetes":
        from xtm_composer.orchestrators.kubernetes import KubernetesOrchestrator

        return KubernetesOrchestrator(daemon.kubernetes, daemon.registry)
    if daemon.selector == "swarm":
        from xtm_composer.orchestrators.swarm import SwarmOrchestrator

        return SwarmOrchestrator(daemon.swarm, daemon.registry)
    if daemon.selector == "portainer":
        from xtm_composer.orchestrators.portainer import PortainerOrchestrator

        return PortainerOrchestrator(
            daemon.portainer, daemon.registry, verify=portainer_tls(daemon.portainer), files_directory=data_directory
        )
    raise ConfigurationError(f"{kind.value}.daemon.selector: unknown orchestrator '{daemon.selector}'")


def portainer_tls(settings: PortainerSettings) -> bool | ssl.SSLContext:
    """Portainer's certificate is verified (the Rust composer never does) unless explicitly disabled."""
    if settings.unsecured_certificate:
        return False
    if settings.ca_bundle is None:
        return True
    try:
        return ssl.create_default_context(cafile=str(settings.ca_bundle))
    except (OSError, ssl.SSLError) as exc:
        raise ConfigurationError(f"daemon.portainer.ca_bundle: {exc}") from None


def build_platform(kind: PlatformKind, settings: PlatformSettings, *, manager_id: str, proxy: ProxyConfig) -> Platform:
    http = build_async_client(settings, proxy_config=proxy)
    if kind is PlatformKind.OPENAEV:
        return OpenAEVClient(http, manager_id=manager_id)
    return OpenCTIClient(http)


def build_runtimes(settings: Settings, *, telemetry: Telemetry | None = None) -> list[PlatformRuntime]:
    """One runtime per enabled platform, each with its own client, orchestrator, registry and proxy."""
    kinds = [kind for kind in PlatformKind if getattr(settings, kind.value).enable]
    if not kinds:
        raise ConfigurationError("no platform enabled: set opencti.enable or openaev.enable (OPENCTI__ENABLE=true)")
    keys = KeySource(settings.manager)
    data_directory = settings.manager.data_directory or default_data_directory()
    runtimes = []
    for kind in kinds:
        platform_settings: PlatformSettings = getattr(settings, kind.value)
        orchestrator = build_orchestrator(kind, platform_settings, data_directory=settings.manager.data_directory)
        proxy = build_proxy_config(platform_settings, platform=kind.value)
        platform = build_platform(kind, platform_settings, manager_id=settings.manager.id, proxy=proxy)
        runtimes.append(
            build_runtime(
                kind,
                settings=settings,
                platform=platform,
                orchestrator=orchestrator,
                private_key=keys.ring(),
                proxy=proxy,
            )
        )
        runtimes[-1].status_file = status_path(data_directory, kind)
        runtimes[-1].key_source = keys
        if telemetry is not None:
            runtimes[-1].telemetry = telemetry
    return runtimes
