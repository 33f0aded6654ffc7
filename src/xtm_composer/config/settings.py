"""The settings model, the same layout and keys as the Rust composer's configuration.

Every section rejects unknown keys so a typo is caught at start-up instead of being silently
ignored. Durations are in seconds unless a field says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from xtm_composer.config.swarm import SwarmSettings

Selector = Literal["docker", "kubernetes", "portainer", "swarm"]


class Section(BaseModel):
    # No infinities or NaN anywhere: `execute_schedule: inf` would silently stop reconciling.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class LoggerSettings(Section):
    level: Literal["trace", "debug", "info", "warn", "warning", "error"] = "info"
    format: Literal["json", "pretty"] = "json"
    # `true` writes daily-rolling files under ./logs (the Rust composer's behaviour); a string
    # names the directory; `false` disables file logging.
    directory: bool | str = False
    console: bool = True

    @field_validator("level", mode="before")
    @classmethod
    def _lower_level(cls, value: Any) -> Any:
        return value.lower() if isinstance(value, str) else value


class DebugSettings(Section):
    show_env_vars: bool = False
    show_sensitive_env_vars: bool = False


class Pkcs11Settings(Section):
    """The private key in a PKCS#11 token (HSM); it never leaves the token."""

    module: Path  # the PKCS#11 library, e.g. /usr/lib/softhsm/libsofthsm2.so
    token_label: str = Field(min_length=1)
    key_label: str | None = None
    key_id: str | None = None  # hex
    pin_env: str | None = None  # name of the environment variable holding the user PIN
    pin_file: Path | None = None
    # How v2 (OAEP-SHA256) blobs are opened: "token" asks the token for RSA-OAEP with SHA-256
    # (the right way); "raw" uses the token's raw RSA (CKM_RSA_X_509) and decodes OAEP on the host,
    # for tokens that only do OAEP with SHA-1 (SoftHSM2 2.6). "raw" must be chosen explicitly.
    oaep: Literal["token", "raw"] = "token"

    @field_validator("key_id")
    @classmethod
    def _hex_id(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                bytes.fromhex(value)
            except ValueError:
                raise ValueError("must be hexadecimal (the CKA_ID bytes, e.g. 0a1b)") from None
        return value

    @model_validator(mode="after")
    def _one_key_and_one_pin(self) -> Pkcs11Settings:
        if not (self.key_label or self.key_id):
            raise ValueError("key_label or key_id is required")
        if not (self.pin_env or self.pin_file):
            raise ValueError("pin_env or pin_file is required (the PIN is never written inline)")
        return self


class MonitoringSettings(Section):
    """`/healthz`, `/readyz` and `/metrics` (Prometheus) over HTTP; off by default."""

    enable: bool = False
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)


class AlertSettings(Section):
    """One structured `alert` log event per problem (and one webhook POST when a URL is set)."""

    webhook_url: str | None = None
    webhook_timeout: float = Field(default=5, gt=0)
    webhook_attempts: int = Field(default=3, ge=1, le=10)
    webhook_retry_delay: float = Field(default=1, ge=0, description="seconds before the first retry; doubles")
    # A reconcile loop that completed no pass for this long (seconds) is "stalled".
    stalled_after: float = Field(default=300, gt=0)


class AuditSettings(Section):
    """Append-only JSON lines, one per orchestrator action and per status reported; rotated by size."""

    path: Path | None = None
    max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024)
    backups: int = Field(default=10, ge=1)


class ManagerSettings(Section):
    id: str = Field(min_length=1, max_length=256)
    name: str = "Filigran connector manager"
    # Bounded below so that no setting can make a busy loop, above so that a typo cannot stop it.
    execute_schedule: float = Field(default=10, ge=0.5, le=86_400, description="seconds between reconcile passes")
    ping_alive_schedule: float = Field(default=60, ge=1, le=86_400, description="seconds between pings")
    credentials_key: str | None = None
    credentials_key_filepath: Path | None = None
    credentials_key_pkcs11: Pkcs11Settings | None = None
    # Keys used before a rotation: file paths, or "pkcs11:<key label>" in the same token.
    credentials_previous_keys: list[str] = []
    logger: LoggerSettings = LoggerSettings()
    debug: DebugSettings = DebugSettings()
    max_concurrent_actions: int = Field(default=16, ge=1, le=64)
    # Minutes a connector may stay in a reboot loop before it is stopped; unset: never stopped.
    reboot_loop_stop_after: float | None = Field(default=None, gt=0)
    # A pass removes at most max(max_removals_per_pass, max_removals_fraction × workloads) orphans;
    # a bigger drop waits for the next pass to confirm it.
    max_removals_per_pass: int = Field(default=5, ge=0)
    max_removals_fraction: float = Field(default=0.2, ge=0, le=1)
    health_interval: float = Field(default=30, ge=1, le=86_400, description="seconds between health reports")
    logs_tail: int = Field(default=100, ge=1, le=10_000)
    # Where files mounted into workloads (the proxy CA bundle) are written; default
    # /var/lib/xtm-composer as root, else ~/.local/share/xtm-composer.
    data_directory: Path | None = None
    strict_key_permissions: bool = False
    monitoring: MonitoringSettings = MonitoringSettings()
    alerts: AlertSettings = AlertSettings()
    audit: AuditSettings = AuditSettings()

    @field_validator("credentials_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("id")
    @classmethod
    def _meaningful_id(cls, value: str) -> str:
        if not value.strip() or value != value.strip():
            raise ValueError("must be a non-blank id without leading or trailing spaces")
        return value


class RegistrySettings(Section):
    server: str | None = None
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    email: str | None = None


class KubernetesSettings(Section):
    # Always | IfNotPresent | Never; anything else is warned about and replaced by IfNotPresent.
    image_pull_policy: str = "IfNotPresent"
    # A Deployment (YAML object, or JSON text) merged under ours: ours wins, the rest is kept.
    base_deployment: dict[str, Any] | None = None
    base_deployment_json: str | None = None
    # The connector container's `resources` ({requests: {...}, limits: {...}}).
    image_resources: dict[str, Any] | None = None
    # Namespace of the connectors' Deployments; default: the composer pod's own namespace
    # (service-account mount), else the kubeconfig context's, else `default`.
    namespace: str | None = None
    # Kubeconfig file and context; default: in-cluster service account when running in a pod,
    # else $KUBECONFIG / ~/.kube/config and its current context.
    kubeconfig: str | None = None
    context: str | None = None
    request_timeout: float = Field(default=30, gt=0, description="seconds per API server request")


class PortainerSettings(Section):
    api: str | None = None
    api_key: str | None = Field(default=None, repr=False)
    env_id: int | str | None = None
    env_type: str = "docker"
    api_version: str = "v1.44"
    stack: str | None = None
    network_mode: str | None = None
    # Portainer's certificate is verified unless this is set (its default one is self-signed).
    unsecured_certificate: bool = False
    ca_bundle: Path | None = None  # CA that signed Portainer's certificate


class UlimitSettings(Section):
    name: str = Field(min_length=1)
    soft: int
    hard: int


class DockerSettings(Section):
    network_mode: str | None = None
    extra_hosts: list[str] | None = None
    dns: list[str] | None = None
    dns_search: list[str] | None = None
    privileged: bool | None = None
    cap_add: list[str] | None = None
    cap_drop: list[str] | None = None
    security_opt: list[str] | None = None
    userns_mode: str | None = None
    pid_mode: str | None = None
    ipc_mode: str | None = None
    uts_mode: str | None = None
    runtime: str | None = None
    shm_size: int | str | None = None
    sysctls: dict[str, str | int | float] | None = None
    ulimits: list[UlimitSettings] | None = None


class DaemonSettings(Section):
    selector: Selector = "docker"
    registry: RegistrySettings | None = None
    docker: DockerSettings = DockerSettings()
    kubernetes: KubernetesSettings = KubernetesSettings()
    portainer: PortainerSettings = PortainerSettings()
    swarm: SwarmSettings | None = None

    @field_validator("kubernetes", "portainer", "docker", mode="before")
    @classmethod
    def _null_section_is_default(cls, value: Any) -> Any:
        return {} if value is None else value


class PlatformSettings(Section):
    enable: bool = False
    url: str | None = None
    token: str = Field(default="", repr=False)
    # The token read from a file (a mounted secret) instead of the configuration; wins over `token`.
    token_file: Path | None = None
    # Mutual TLS: the composer's client certificate and key, and the CA bundle that alone is trusted
    # for the platform's certificate (pinned trust: the system CAs are then not used).
    tls_client_cert: Path | None = None
    tls_client_key: Path | None = None
    tls_ca_bundle: Path | None = None
    unsecured_certificate: bool = False
    with_proxy: bool = False
    http_proxy: str | None = None
    https_proxy: str | None = None
    no_proxy: str | None = None
    https_proxy_ca: list[str] | str | None = None
    https_proxy_reject_unauthorized: bool = True
    logs_schedule: float = Field(default=10, ge=1, le=86_400, description="seconds between log pushes, per connector")
    request_timeout: float = Field(default=30, gt=0, le=600)
    connect_timeout: float = Field(default=10, gt=0, le=600)
    daemon: DaemonSettings = DaemonSettings()

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class Settings(Section):
    manager: ManagerSettings
    opencti: PlatformSettings = PlatformSettings()
    openaev: PlatformSettings = PlatformSettings()

    @model_validator(mode="after")
    def _enabled_platform_has_token(self) -> Settings:
        for name in ("opencti", "openaev"):
            platform: PlatformSettings = getattr(self, name)
            if platform.enable and not platform.url:
                raise ValueError(f"{name}.url is required when {name}.enable is true")
            if platform.enable and not (platform.token or platform.token_file):
                raise ValueError(f"{name}.token (or {name}.token_file) is required when {name}.enable is true")
            if bool(platform.tls_client_cert) != bool(platform.tls_client_key):
                raise ValueError(f"{name}.tls_client_cert and {name}.tls_client_key go together")
        return self
