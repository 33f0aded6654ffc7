"""Docker payloads built without I/O: each option → its exact Engine API field, image references,
registry credentials, and every proxy/CA combination → workload env and mounts."""

from __future__ import annotations

import json

import pytest
import trustme

from xtm_composer.config.settings import DockerSettings, PlatformSettings, RegistrySettings
from xtm_composer.errors import ConfigurationError
from xtm_composer.orchestrators.docker_options import (
    DOCKER_OPTION_TABLE,
    host_config,
    image_reference,
    registry_auth,
)
from xtm_composer.proxy import CA_ENV_KEYS, PROXY_CA_PATH, build_proxy_config

OPTION_CASES = [
    ("network_mode", "opencti_default", "NetworkMode", "opencti_default"),
    ("extra_hosts", ["host.docker.internal:host-gateway"], "ExtraHosts", ["host.docker.internal:host-gateway"]),
    ("dns", ["8.8.8.8"], "Dns", ["8.8.8.8"]),
    ("dns_search", ["example.com"], "DnsSearch", ["example.com"]),
    ("privileged", True, "Privileged", True),
    ("cap_add", ["NET_ADMIN"], "CapAdd", ["NET_ADMIN"]),
    ("cap_drop", ["MKNOD"], "CapDrop", ["MKNOD"]),
    ("security_opt", ["no-new-privileges:true"], "SecurityOpt", ["no-new-privileges:true"]),
    ("userns_mode", "host", "UsernsMode", "host"),
    ("pid_mode", "host", "PidMode", "host"),
    ("ipc_mode", "private", "IpcMode", "private"),
    ("uts_mode", "host", "UTSMode", "host"),
    ("runtime", "runc", "Runtime", "runc"),
    ("shm_size", "64m", "ShmSize", 64 * 1024 * 1024),
    ("shm_size", 1048576, "ShmSize", 1048576),
    ("sysctls", {"net.core.somaxconn": 1024}, "Sysctls", {"net.core.somaxconn": "1024"}),
    (
        "ulimits",
        [{"name": "nofile", "soft": 65536, "hard": 65536}],
        "Ulimits",
        [{"Name": "nofile", "Soft": 65536, "Hard": 65536}],
    ),
]


@pytest.mark.parametrize(("option", "value", "field", "expected"), OPTION_CASES, ids=[c[0] for c in OPTION_CASES])
def test_each_docker_option_reaches_its_engine_api_field(option, value, field, expected):
    payload = host_config(DockerSettings(**{option: value}))
    assert payload[field] == expected
    assert payload["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 0}


def test_every_docker_setting_is_mapped_by_the_table():
    assert set(DOCKER_OPTION_TABLE) == set(DockerSettings.model_fields)


def test_no_option_set_gives_only_the_restart_policy():
    assert set(host_config(DockerSettings())) <= {"RestartPolicy", "NetworkMode"}


def test_unknown_docker_option_is_rejected():
    with pytest.raises(ValueError, match="priviledged"):
        DockerSettings(priviledged=True)


@pytest.mark.parametrize(
    ("image", "server", "expected"),
    [
        ("opencti/connector-mitre:6.8.3", None, "opencti/connector-mitre:6.8.3"),
        ("opencti/connector-mitre", None, "opencti/connector-mitre:latest"),
        ("opencti/connector-mitre:6.8.3", "registry.example.com", "registry.example.com/opencti/connector-mitre:6.8.3"),
        (
            "opencti/connector-mitre:6.8.3",
            "registry.example.com/",
            "registry.example.com/opencti/connector-mitre:6.8.3",
        ),
        (
            "/opencti//connector-mitre:6.8.3",
            "https://registry.example.com",
            "registry.example.com/opencti/connector-mitre:6.8.3",
        ),
        ("opencti/connector-mitre", "localhost:5000", "localhost:5000/opencti/connector-mitre:latest"),
        ("localhost:5000/opencti/x", "registry.example.com", "localhost:5000/opencti/x:latest"),
        ("registry.example.com/opencti/x:1", "registry.example.com", "registry.example.com/opencti/x:1"),
        ("opencti/x@sha256:" + "a" * 64, "mirror.local:8443", "mirror.local:8443/opencti/x@sha256:" + "a" * 64),
        ("opencti/x:6.8.3@sha256:" + "b" * 64, None, "opencti/x@sha256:" + "b" * 64),
    ],
)
def test_image_reference_is_built_once_and_correctly(image, server, expected):
    registry = RegistrySettings(server=server) if server else None
    assert str(image_reference(image, registry)) == expected


def test_registry_port_is_never_mistaken_for_a_tag():
    ref = image_reference("opencti/x", RegistrySettings(server="localhost:5000"))
    assert ref.repository == "localhost:5000/opencti/x" and ref.tag == "latest"


def test_registry_credentials_are_passed_to_the_pull():
    auth = registry_auth(RegistrySettings(server="https://r.example.com/", username="u", password="p:w", email="e@x"))
    assert auth == {"username": "u", "password": "p:w", "email": "e@x", "serveraddress": "r.example.com"}
    assert registry_auth(RegistrySettings(server="r.example.com")) is None


@pytest.fixture(scope="module")
def ca_pem() -> str:
    return trustme.CA().cert_pem.bytes().decode()


def proxy(**kwargs):
    return build_proxy_config(PlatformSettings(**kwargs), platform="opencti")


def test_without_with_proxy_nothing_is_injected(ca_pem):
    config = proxy(with_proxy=False, http_proxy="http://p:3128", https_proxy_ca=[ca_pem])
    assert config.workload_env == () and config.workload_files() == ()


def test_proxy_urls_become_workload_env():
    config = proxy(with_proxy=True, http_proxy="http://p:3128", https_proxy="http://p:3129", no_proxy="a,.b")
    assert dict(config.workload_env) == {
        "HTTP_PROXY": "http://p:3128",
        "HTTPS_PROXY": "http://p:3129",
        "NO_PROXY": "a,.b",
    }
    assert config.workload_files() == ()


@pytest.mark.parametrize("form", ["list-inline", "json-string", "file-path", "two-entries"])
def test_ca_entries_in_every_form_become_one_mounted_bundle(tmp_path, ca_pem, form):
    other = trustme.CA().cert_pem.bytes().decode()
    path = tmp_path / "ca.pem"
    path.write_text(ca_pem)
    value = {
        "list-inline": [ca_pem],
        "json-string": json.dumps([ca_pem]),
        "file-path": [str(path)],
        "two-entries": [str(path), other],
    }[form]
    config = proxy(with_proxy=True, https_proxy="http://p:3128", https_proxy_ca=value)
    (mounted,) = config.workload_files()
    assert mounted.path == PROXY_CA_PATH and ca_pem.strip() in mounted.content
    if form == "two-entries":
        assert other.strip() in mounted.content
    env = dict(config.workload_env)
    assert all(env[key] == PROXY_CA_PATH for key in CA_ENV_KEYS)
    assert "NODE_TLS_REJECT_UNAUTHORIZED" not in env


def test_node_tls_reject_unauthorized_only_when_asked():
    assert (
        dict(proxy(with_proxy=True, https_proxy_reject_unauthorized=False).workload_env)["NODE_TLS_REJECT_UNAUTHORIZED"]
        == "0"
    )
    assert "NODE_TLS_REJECT_UNAUTHORIZED" not in dict(proxy(with_proxy=True).workload_env)


@pytest.mark.parametrize(
    "value", [["/nonexistent/ca.pem"], ["-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"], "[not json"]
)
def test_unusable_ca_entry_is_a_configuration_error_naming_the_key(value):
    with pytest.raises(ConfigurationError, match=r"opencti\.https_proxy_ca"):
        proxy(with_proxy=True, https_proxy_ca=value)


def test_platform_client_ignores_process_proxy_variables_unless_configured(monkeypatch):
    from xtm_composer.platforms.http import build_async_client, bypasses_proxy

    monkeypatch.setenv("HTTPS_PROXY", "http://should-not-be-used:1")
    client = build_async_client(PlatformSettings(url="https://opencti.example.org"))
    assert client._trust_env is False
    assert bypasses_proxy("https://opencti.internal", ".internal")
    assert bypasses_proxy("https://a.b.c", "*")
    assert not bypasses_proxy("https://opencti.example.org", "example.com.evil,other")
