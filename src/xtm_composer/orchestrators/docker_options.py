"""Pure payload pieces for Docker-API engines (Docker, Portainer): host config and image references.

`daemon.docker` options reach the engine through one table, so an option is either mapped
here or rejected at start-up by the settings model (which forbids unknown keys).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import docker.types
import docker.utils

from xtm_composer.config.settings import DockerSettings, RegistrySettings
from xtm_composer.domain import MountedFile

# Our option name → docker-py HostConfig keyword (which names the Engine API field).
DOCKER_OPTION_TABLE: dict[str, str] = {
    "network_mode": "network_mode",  # HostConfig.NetworkMode
    "extra_hosts": "extra_hosts",  # HostConfig.ExtraHosts
    "dns": "dns",  # HostConfig.Dns
    "dns_search": "dns_search",  # HostConfig.DnsSearch
    "privileged": "privileged",  # HostConfig.Privileged
    "cap_add": "cap_add",  # HostConfig.CapAdd
    "cap_drop": "cap_drop",  # HostConfig.CapDrop
    "security_opt": "security_opt",  # HostConfig.SecurityOpt
    "userns_mode": "userns_mode",  # HostConfig.UsernsMode
    "pid_mode": "pid_mode",  # HostConfig.PidMode
    "ipc_mode": "ipc_mode",  # HostConfig.IpcMode
    "uts_mode": "uts_mode",  # HostConfig.UTSMode
    "runtime": "runtime",  # HostConfig.Runtime
    "shm_size": "shm_size",  # HostConfig.ShmSize (bytes; "64m" accepted)
    "sysctls": "sysctls",  # HostConfig.Sysctls
    "ulimits": "ulimits",  # HostConfig.Ulimits
}

# Crashes are restarted (and counted in RestartCount) by the engine; a clean exit stays down.
RESTART_POLICY = {"Name": "on-failure", "MaximumRetryCount": 0}


def _convert(option: str, value: Any) -> Any:
    if option == "ulimits":
        return [docker.types.Ulimit(name=u.name, soft=u.soft, hard=u.hard) for u in value]
    if option == "sysctls":
        return {str(k): str(v) for k, v in value.items()}
    return value


def host_config_kwargs(options: DockerSettings, *, files: tuple[MountedFile, ...] = (), file_sources=None) -> dict:
    """Keyword arguments for docker-py's `create_host_config`, from the settings table."""
    kwargs: dict[str, Any] = {"restart_policy": dict(RESTART_POLICY)}
    for option, keyword in DOCKER_OPTION_TABLE.items():
        value = getattr(options, option)
        if value is not None:
            kwargs[keyword] = _convert(option, value)
    if files:
        sources = file_sources or {}
        kwargs["mounts"] = [
            docker.types.Mount(target=f.path, source=str(sources[f.path]), type="bind", read_only=True) for f in files
        ]
    return kwargs


def host_config(options: DockerSettings, *, api_version: str = "1.44", **extra: Any) -> dict[str, Any]:
    """The exact `HostConfig` payload the Engine API receives (no I/O)."""
    return dict(docker.types.HostConfig(version=api_version, **host_config_kwargs(options, **extra)))


@dataclass(frozen=True, slots=True)
class ImageReference:
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"


def _has_registry_host(repository: str) -> bool:
    first, sep, _ = repository.partition("/")
    return bool(sep) and ("." in first or ":" in first or first == "localhost")


def _clean_server(server: str) -> str:
    server = server.strip()
    for scheme in ("https://", "http://"):
        if server.startswith(scheme):
            server = server[len(scheme) :]
    return server.strip("/")


def image_reference(image: str, registry: RegistrySettings | None = None) -> ImageReference:
    """The image to pull and run: registry prefix once, no stray `/`, ports kept, `latest` by default."""
    cleaned = "/".join(part for part in image.strip().split("/") if part)
    server = _clean_server(registry.server) if registry and registry.server else ""
    if server and not _has_registry_host(cleaned) and not cleaned.startswith(f"{server}/"):
        cleaned = f"{server}/{cleaned}"
    if "@" in cleaned:
        repository, _, digest = cleaned.partition("@")
        repository, _ = docker.utils.parse_repository_tag(repository)
        return ImageReference(repository=repository, digest=digest)
    repository, tag = docker.utils.parse_repository_tag(cleaned)
    return ImageReference(repository=repository, tag=tag or "latest")


def registry_auth(registry: RegistrySettings | None) -> dict[str, str] | None:
    """Credentials for a pull (`X-Registry-Auth`), or None for an anonymous pull."""
    if registry is None or not registry.username:
        return None
    auth = {"username": registry.username, "password": registry.password or ""}
    if registry.email:
        auth["email"] = registry.email
    if registry.server:
        auth["serveraddress"] = _clean_server(registry.server)
    return auth
