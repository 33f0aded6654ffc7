"""Builds the runtime objects from settings: platform clients, orchestrators, runtimes."""

from __future__ import annotations

from pathlib import Path

from xtm_composer.config.settings import PlatformSettings, Settings
from xtm_composer.daemon import PlatformRuntime, build_runtime
from xtm_composer.domain import PlatformKind
from xtm_composer.errors import ConfigurationError
from xtm_composer.keys import load_manager_key
from xtm_composer.orchestrators.base import Orchestrator
from xtm_composer.orchestrators.files import default_data_directory
from xtm_composer.platforms.http import build_async_client
from xtm_composer.platforms.opencti import OpenCTIClient
from xtm_composer.proxy import build_proxy_config
from xtm_composer.status_file import status_path


def build_orchestrator(kind: PlatformKind, settings: PlatformSettings, *, data_directory: Path | None) -> Orchestrator:
    """The orchestrator of one platform, with that platform's own daemon and registry settings."""
    selector = settings.daemon.selector
    if selector == "docker":
        from xtm_composer.orchestrators.docker_engine import DockerOrchestrator

        return DockerOrchestrator(
            options=settings.daemon.docker, registry=settings.daemon.registry, files_directory=data_directory
        )
    raise ConfigurationError(f"{kind.value}.daemon.selector: '{selector}' is not supported yet (supported: docker)")


def build_runtimes(settings: Settings) -> list[PlatformRuntime]:
    if settings.openaev.enable:
        raise ConfigurationError("openaev.enable: OpenAEV support is not available yet")
    if not settings.opencti.enable:
        raise ConfigurationError("no platform enabled: set opencti.enable (OPENCTI__ENABLE=true)")
    private_key = load_manager_key(settings.manager)
    data_directory = settings.manager.data_directory or default_data_directory()
    runtimes = []
    for kind in (PlatformKind.OPENCTI,):
        platform_settings: PlatformSettings = getattr(settings, kind.value)
        orchestrator = build_orchestrator(kind, platform_settings, data_directory=settings.manager.data_directory)
        proxy = build_proxy_config(platform_settings, platform=kind.value)
        platform = OpenCTIClient(build_async_client(platform_settings, proxy_config=proxy))
        runtimes.append(
            build_runtime(
                kind,
                settings=settings,
                platform=platform,
                orchestrator=orchestrator,
                private_key=private_key,
                proxy=proxy,
            )
        )
        runtimes[-1].status_file = status_path(data_directory, kind)
    return runtimes
