"""Demo content: a few realistic OpenCTI connectors, all running one image given by the caller.

The configuration mirrors what the real connectors take (scope, log level, intervals, API keys);
the API keys are obviously fake. One value holds `=` characters (a URL with a query string) to
show that values survive being split on the first `=` only.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from xtm_composer.emulator.state import ConnectorView, EmulatorState

DEFAULT_DEMO_IMAGE = "xtm-composer/demo-connector:1"


@dataclass(frozen=True)
class DemoConnector:
    name: str
    config: dict[str, str]
    secrets: dict[str, str] = field(default_factory=dict)
    start: bool = True


DEMO_CONNECTORS = (
    DemoConnector(
        name="MITRE ATT&CK",
        config={
            "CONNECTOR_SCOPE": "identity,attack-pattern,course-of-action,intrusion-set,malware,tool,report",
            "CONNECTOR_LOG_LEVEL": "info",
            "MITRE_INTERVAL": "7",
            "MITRE_REMOVE_STATEMENT_MARKING": "true",
        },
    ),
    DemoConnector(
        name="Abuse.ch URLhaus",
        config={
            "CONNECTOR_SCOPE": "urlhaus",
            "CONNECTOR_LOG_LEVEL": "info",
            "URLHAUS_CSV_URL": "https://urlhaus.abuse.ch/downloads/csv_recent/?format=csv&limit=1000",
            "URLHAUS_INTERVAL": "3",
            "URLHAUS_IMPORT_OFFLINE": "true",
        },
        secrets={"URLHAUS_API_KEY": "demo-urlhaus-0f3c9a7e5b1d4c2a"},
    ),
    DemoConnector(
        name="AlienVault OTX",
        config={
            "CONNECTOR_SCOPE": "alienvault",
            "CONNECTOR_LOG_LEVEL": "warning",
            "ALIENVAULT_BASE_URL": "https://otx.alienvault.com",
            "ALIENVAULT_TLP": "White",
            "ALIENVAULT_INTERVAL_SEC": "1800",
        },
        secrets={"ALIENVAULT_API_KEY": "demo-otx-6b2e8d41c07f59a3e1d2c4b5a6978f00"},
    ),
    DemoConnector(
        name="CISA Known Exploited Vulnerabilities",
        config={
            "CONNECTOR_SCOPE": "cisa",
            "CONNECTOR_LOG_LEVEL": "info",
            "CISA_CATALOG_URL": "https://www.cisa.gov/sites/default/files/feeds/known_exploited_vulnerabilities.json",
            "CISA_CREATE_INFRASTRUCTURES": "false",
            "CISA_TLP": "TLP:CLEAR",
            "CISA_INTERVAL": "2",
        },
        start=False,
    ),
)


def seed_demo(state: EmulatorState, *, image: str = DEFAULT_DEMO_IMAGE) -> list[ConnectorView]:
    """Add the demo connectors (three requested to start, one left stopped) and return them."""
    return [
        state.add_connector(demo.name, image, config=demo.config, secrets=demo.secrets, start=demo.start)
        for demo in DEMO_CONNECTORS
    ]


OPENAEV_DEMO_COLLECTORS = (
    DemoConnector(
        name="MITRE ATT&CK Collector",
        config={"COLLECTOR_PERIOD": "3600", "COLLECTOR_LOG_LEVEL": "info"},
    ),
    DemoConnector(
        name="Microsoft Defender Collector",
        config={"COLLECTOR_PERIOD": "60", "MICROSOFT_DEFENDER_TENANT_ID": "00000000-demo-tenant"},
        secrets={"MICROSOFT_DEFENDER_CLIENT_SECRET": "demo-defender-5c1e7a0b9d3f"},
    ),
)


def seed_openaev_demo(state: EmulatorState, *, image: str = DEFAULT_DEMO_IMAGE) -> list[ConnectorView]:
    """Add two OpenAEV collectors (both requested to start) and return them."""
    return [
        state.add_connector(demo.name, image, config=demo.config, secrets=demo.secrets, start=demo.start)
        for demo in OPENAEV_DEMO_COLLECTORS
    ]
