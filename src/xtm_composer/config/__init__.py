"""Settings: the typed model and the layered loader (YAML defaults, env file, env vars)."""

from xtm_composer.config.loader import load_settings
from xtm_composer.config.settings import (
    DaemonSettings,
    LoggerSettings,
    ManagerSettings,
    PlatformSettings,
    Settings,
)

__all__ = [
    "DaemonSettings",
    "LoggerSettings",
    "ManagerSettings",
    "PlatformSettings",
    "Settings",
    "load_settings",
]
