"""Configuration: Rust-compatible layout, layered sources, one-line errors naming the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from xtm_composer.config import load_settings
from xtm_composer.errors import ConfigurationError

from ..paths import RUST_DEFAULT_CONFIG


def write(directory: Path, name: str, text: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)


def test_the_rust_composer_default_yaml_loads_unchanged(tmp_path):
    write(tmp_path, "default.yaml", RUST_DEFAULT_CONFIG.read_text())
    settings = load_settings(tmp_path, environ={})
    assert settings.manager.id == "default-manager-id"
    assert settings.opencti.enable is True and settings.opencti.daemon.selector == "kubernetes"
    assert settings.openaev.daemon.portainer.stack == "opencti-dev"
    assert settings.opencti.logs_schedule == 10 and settings.opencti.connect_timeout == 10


def test_layers_apply_in_order_default_then_env_file_then_env_vars(tmp_path):
    write(tmp_path, "default.yaml", "manager: {id: from-default, name: A}\nopencti: {url: http://a:1}\n")
    write(tmp_path, "prod.yaml", "manager: {name: B}\nopencti: {url: http://b:2, token: t}\n")
    settings = load_settings(
        tmp_path, environ={"COMPOSER_ENV": "prod", "OPENCTI__URL": "http://c:3", "MANAGER__EXECUTE_SCHEDULE": "2.5"}
    )
    assert (settings.manager.id, settings.manager.name) == ("from-default", "B")
    assert settings.opencti.url == "http://c:3" and settings.opencti.token == "t"
    assert settings.manager.execute_schedule == 2.5


@pytest.mark.parametrize(
    ("env", "check"),
    [
        ({"OPENCTI__ENABLE": "false"}, lambda s: s.opencti.enable is False),
        (
            {"OPENCTI__ENABLE": "true", "OPENCTI__TOKEN": "x", "OPENCTI__URL": "http://o:1"},
            lambda s: s.opencti.enable is True,
        ),
        ({"OPENCTI__DAEMON__SELECTOR": "docker"}, lambda s: s.opencti.daemon.selector == "docker"),
        (
            {"OPENCTI__DAEMON__DOCKER__DNS": '["1.1.1.1","8.8.8.8"]'},
            lambda s: s.opencti.daemon.docker.dns == ["1.1.1.1", "8.8.8.8"],
        ),
        (
            {"OPENCTI__DAEMON__DOCKER__SYSCTLS": '{"net.core.somaxconn": "1024"}'},
            lambda s: s.opencti.daemon.docker.sysctls == {"net.core.somaxconn": "1024"},
        ),
        (
            {"OPENCTI__HTTPS_PROXY_CA__10": "k", "OPENCTI__HTTPS_PROXY_CA__2": "c", "OPENCTI__HTTPS_PROXY_CA__0": "a"},
            lambda s: s.opencti.https_proxy_ca == ["a", "c", "k"],
        ),
        ({"manager__logger__level": "DEBUG"}, lambda s: s.manager.logger.level == "debug"),
        (
            {"MANAGER__CREDENTIALS_KEY": "-----BEGIN PRIVATE KEY-----\\nAAA\\n-----END PRIVATE KEY-----"},
            lambda s: s.manager.credentials_key.startswith("-----BEGIN"),
        ),
    ],
)
def test_environment_variables_nest_with_double_underscores(tmp_path, env, check):
    assert check(load_settings(tmp_path, environ={"MANAGER__ID": "m", **env}))


@pytest.mark.parametrize(
    ("env", "files", "key"),
    [
        ({}, {}, "manager.id"),
        ({"MANAGER__ID": "m", "OPENCTI__DAEMON__SELECTOR": "nomad"}, {}, "opencti.daemon.selector"),
        ({"MANAGER__ID": "m", "MANAGER__LOGGER__LEVEL": "loud"}, {}, "manager.logger.level"),
        ({"MANAGER__ID": "m", "MANAGER__EXECUTE_SCHEDULE": "often"}, {}, "manager.execute_schedule"),
        ({"MANAGER__ID": "m", "OPENCTI__DAEMON__DOCKER__PRIVILEDGED": "true"}, {}, "opencti.daemon.docker.priviledged"),
        ({"MANAGER__ID": "m", "OPENCTI__URL": "ftp://x"}, {}, "opencti.url"),
        (
            {"MANAGER__ID": "m", "OPENCTI__ENABLE": "true", "OPENCTI__URL": "http://o", "OPENCTI__TOKEN": ""},
            {},
            "opencti.token",
        ),
        ({"MANAGER__ID": "m", "OPENCTI__ENABLE": "true", "OPENCTI__TOKEN": "t"}, {}, "opencti.url"),
        ({"MANAGER__ID": "m", "MANAGER__EXECUTE_SCHEDULE": "inf"}, {}, "manager.execute_schedule"),
        ({"MANAGER__ID": "m", "MANAGER__EXECUTE_SCHEDULE": "1e-7"}, {}, "manager.execute_schedule"),
        ({"MANAGER__ID": "m", "OPENCTI__REQUEST_TIMEOUT": "nan"}, {}, "opencti.request_timeout"),
        ({"MANAGER__ID": "   "}, {}, "manager.id"),
        ({}, {"default.yaml/": ""}, "default.yaml"),
        ({"MANAGER__ID": "m", "COMPOSER_ENV": "staging"}, {}, "staging.yaml"),
        ({}, {"default.yaml": "manager: [unclosed"}, "default.yaml"),
        ({}, {"default.yaml": "manager:\n  id: m\n  colour: blue\n"}, "manager.colour"),
    ],
)
def test_bad_configuration_is_one_error_naming_the_key(tmp_path, env, files, key):
    for name, text in files.items():
        if name.endswith("/"):
            (tmp_path / name.rstrip("/")).mkdir(parents=True)
        else:
            write(tmp_path, name, text)
    with pytest.raises(ConfigurationError) as info:
        load_settings(tmp_path, environ=env)
    message = str(info.value)
    assert key in message and "\n" not in message


def test_cli_run_with_bad_configuration_prints_one_line_and_exits_non_zero(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "xtm_composer", "run", "--config-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={"MANAGER__ID": "m", "OPENCTI__DAEMON__SELECTOR": "nomad", "PATH": ""},
        timeout=60,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "opencti.daemon.selector" in lines[0] and "Traceback" not in result.stderr


def test_cli_run_without_key_says_how_to_make_one(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "xtm_composer", "run", "--config-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        env={
            "MANAGER__ID": "m",
            "OPENCTI__ENABLE": "true",
            "OPENCTI__URL": "http://o",
            "OPENCTI__TOKEN": "t",
            "PATH": "",
        },
        timeout=60,
    )
    assert result.returncode == 2
    assert "keygen" in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_a_single_underscore_env_var_gets_a_hint_when_configuration_fails(tmp_path):
    with pytest.raises(ConfigurationError) as info:
        load_settings(
            tmp_path,
            environ={
                "MANAGER__ID": "m",
                "OPENCTI__ENABLE": "true",
                "OPENCTI__TOKEN": "t",
                "OPENCTI_URL": "http://opencti:8080",
            },
        )
    assert "opencti.url" in str(info.value) and "OPENCTI__URL" in str(info.value)
    assert "\n" not in str(info.value)
