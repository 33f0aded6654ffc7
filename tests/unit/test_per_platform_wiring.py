"""Each platform's workloads are built with that platform's own daemon, registry and proxy settings,
and a secret that cannot be decrypted raises one alert, not one per pass."""

from __future__ import annotations

import asyncio
import shutil

from xtm_composer.config.loader import load_settings
from xtm_composer.config.settings import PlatformSettings
from xtm_composer.crypto import load_private_key_file
from xtm_composer.daemon import PlatformRuntime
from xtm_composer.domain import ConfigEntry, Connector, PlatformKind, RequestedStatus
from xtm_composer.telemetry import Telemetry
from xtm_composer.testing.simulated import SimulatedOrchestrator, SimulatedPlatform
from xtm_composer.wiring import build_runtimes

from ..paths import SHARED_VECTORS


def test_each_platform_gets_its_own_daemon_registry_and_proxy(tmp_path):
    key = tmp_path / "key.pem"
    shutil.copyfile(SHARED_VECTORS / "test-key.pkcs8.pem", key)
    key.chmod(0o600)
    env = {
        "MANAGER__ID": "m",
        "MANAGER__CREDENTIALS_KEY_FILEPATH": str(key),
        "MANAGER__DATA_DIRECTORY": str(tmp_path / "data"),
        "OPENCTI__ENABLE": "true",
        "OPENCTI__URL": "http://octi:4000",
        "OPENCTI__TOKEN": "a",
        "OPENCTI__DAEMON__DOCKER__DNS": '["1.1.1.1"]',
        "OPENCTI__DAEMON__REGISTRY__SERVER": "octi.registry",
        "OPENCTI__WITH_PROXY": "true",
        "OPENCTI__HTTPS_PROXY": "http://octi-proxy:3128",
        "OPENAEV__ENABLE": "true",
        "OPENAEV__URL": "http://oaev:8080",
        "OPENAEV__TOKEN": "b",
        "OPENAEV__DAEMON__DOCKER__DNS": '["9.9.9.9"]',
        "OPENAEV__DAEMON__REGISTRY__SERVER": "oaev.registry",
    }
    runtimes = {r.kind: r for r in build_runtimes(load_settings(tmp_path, environ=env))}
    octi, oaev = runtimes[PlatformKind.OPENCTI], runtimes[PlatformKind.OPENAEV]
    assert octi.orchestrator is not oaev.orchestrator
    assert octi.orchestrator._options.dns == ["1.1.1.1"] and oaev.orchestrator._options.dns == ["9.9.9.9"]
    assert octi.orchestrator._registry.server == "octi.registry"
    assert oaev.orchestrator._registry.server == "oaev.registry"
    assert dict(octi.proxy.workload_env) == {"HTTPS_PROXY": "http://octi-proxy:3128"}
    assert oaev.proxy.workload_env == () and oaev.platform_env == (("OPENAEV_URL", "http://oaev:8080"),)


def test_an_undecryptable_secret_raises_one_alert_over_many_passes():
    connector = Connector(
        id="c1",
        name="Bad",
        image="img:1",
        contract_hash="h",
        requested_status=RequestedStatus.STARTING,
        current_status=None,
        config=(ConfigEntry("API_KEY", "AQID" * 200, encrypted=True),),
    )
    telemetry = Telemetry(manager_id="m")
    runtime = PlatformRuntime(
        kind=PlatformKind.OPENCTI,
        platform=SimulatedPlatform([connector]),
        orchestrator=SimulatedOrchestrator(),
        settings=PlatformSettings(enable=True, url="http://sim", token="t"),
        manager_id="m",
        manager_name="m",
        private_key=load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem"),
        execute_schedule=1,
        ping_alive_schedule=60,
        telemetry=telemetry,
    )
    now = [0.0]
    runtime.clock = lambda: now[0]
    for _ in range(4):
        asyncio.run(runtime.reconcile_once())
        now[0] += 1000  # past any backoff
    alerts = [a for a in telemetry.alerter.sent if a["alert"] == "decryption_failure"]
    assert len(alerts) == 1 and "API_KEY" in alerts[0]["message"] and alerts[0]["connector_name"] == "Bad"
    sample = telemetry.metrics.registry.get_sample_value(
        "xtm_composer_decryption_failures_total", {"platform": "opencti"}
    )
    assert sample == 4
