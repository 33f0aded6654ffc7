"""Layered configuration loading, compatible with the Rust composer.

Order (later wins): the embedded defaults, `<config dir>/default.yaml`, `<config dir>/<COMPOSER_ENV>.yaml`,
then environment variables with `__` nesting (`MANAGER__ID`, `OPENCTI__DAEMON__SELECTOR`, …).
Indexed env keys (`…__HTTPS_PROXY_CA__0`, `__1`, …) become lists in numeric order.
Any problem becomes a one-line `ConfigurationError` naming the key.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_settings import BaseSettings, EnvSettingsSource, SettingsConfigDict, SettingsError

from xtm_composer.config.settings import Settings
from xtm_composer.errors import ConfigurationError

TOP_LEVEL_SECTIONS = ("manager", "opencti", "openaev")


class _EnvironmentLayer(BaseSettings):
    """Collects `SECTION__KEY__…` environment variables into nested dicts (values stay raw)."""

    model_config = SettingsConfigDict(env_nested_delimiter="__", case_sensitive=False, extra="ignore")

    manager: dict[str, Any] = {}
    opencti: dict[str, Any] = {}
    openaev: dict[str, Any] = {}


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source, reading a given mapping instead of the process environment."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        # A bare `MANAGER=…` is not ours: only nested `SECTION__KEY` variables are read.
        self._mapping = {k.lower(): v for k, v in environ.items() if "__" in k}
        super().__init__(_EnvironmentLayer, env_nested_delimiter="__", case_sensitive=False)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return self._mapping


def embedded_defaults() -> dict[str, Any]:
    text = resources.files("xtm_composer.config").joinpath("default.yaml").read_text(encoding="utf-8")
    return _parse_yaml(text, source="embedded defaults")


def _parse_yaml(text: str, *, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigurationError(f"{source}: invalid YAML{where}") from exc
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigurationError(f"{source}: the top level must be a mapping of sections")
    return data


def read_yaml_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigurationError(f"cannot read configuration file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigurationError(f"configuration file {path} is not UTF-8 text") from None
    return _parse_yaml(text, source=str(path))


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _indexed_dicts_to_lists(value: Any) -> Any:
    """`{"0": a, "1": b, "10": c}` (from `KEY__0`, `KEY__1`, `KEY__10`) → `[a, b, c]` in numeric order."""
    if isinstance(value, dict):
        converted = {k: _indexed_dicts_to_lists(v) for k, v in value.items()}
        if converted and all(isinstance(k, str) and k.isdigit() for k in converted):
            return [converted[k] for k in sorted(converted, key=int)]
        return converted
    return value


def environment_layer(environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    try:
        raw = _MappingEnvSource(os.environ if environ is None else environ)()
    except SettingsError as exc:
        raise ConfigurationError(f"environment variables: {exc}") from None
    return {k: _indexed_dicts_to_lists(v) for k, v in raw.items() if k in TOP_LEVEL_SECTIONS and v}


def format_validation_error(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        location = ".".join(str(p) for p in item["loc"])
        message = item["msg"].removeprefix("Value error, ")
        parts.append(f"{location}: {message}" if location else message)
    return "invalid configuration: " + "; ".join(parts)


def load_settings(
    config_dir: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    env = dict(os.environ if environ is None else environ)
    directory = Path(config_dir or env.get("COMPOSER_CONFIG_DIR", "config"))
    layers = [embedded_defaults()]
    default_file = directory / "default.yaml"
    if default_file.exists():  # a directory or an unreadable file there is an error, not "no file"
        layers.append(read_yaml_file(default_file))
    composer_env = env.get("COMPOSER_ENV")
    if composer_env:
        env_file = directory / f"{composer_env}.yaml"
        if not env_file.exists():
            raise ConfigurationError(
                f"COMPOSER_ENV={composer_env} but {env_file} does not exist (create it or unset COMPOSER_ENV)"
            )
        layers.append(read_yaml_file(env_file))
    layers.append(environment_layer(env))
    merged: dict[str, Any] = {}
    for layer in layers:
        merged = deep_merge(merged, layer)
    try:
        return Settings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigurationError(format_validation_error(exc) + _single_underscore_hint(env)) from None


def _single_underscore_hint(env: Mapping[str, str]) -> str:
    """`OPENCTI_URL` is what connectors read; the composer reads `OPENCTI__URL`: say so when it matters."""
    typos = sorted(
        key
        for key in env
        if "__" not in key
        and key.split("_", 1)[0].lower() in TOP_LEVEL_SECTIONS
        and "_" in key
        and key.replace("_", "__", 1) not in env
    )
    if not typos:
        return ""
    verb = "is" if len(typos) == 1 else "are"
    example = typos[0].replace("_", "__", 1)
    return f" (note: {', '.join(typos[:3])} {verb} set; nested keys take a double underscore, e.g. {example})"
