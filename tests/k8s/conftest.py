"""Fixtures: a fake API server per test, and an orchestrator talking to it through the real client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from xtm_composer.config.settings import KubernetesSettings, RegistrySettings
from xtm_composer.orchestrators.kubernetes import RBAC_RULES, KubernetesOrchestrator

from .fake_apiserver import FakeApiServer


def granted() -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for (group, resource), verbs in RBAC_RULES.items() for verb in verbs}


@pytest.fixture
def fake() -> Iterator[FakeApiServer]:
    server = FakeApiServer().start()
    yield server
    server.stop()
    # Whatever a test made the orchestrator do, the Role in deploy/ grants it.
    assert server.verbs() <= granted(), sorted(server.verbs() - granted())


@pytest.fixture
def make_orchestrator(fake: FakeApiServer) -> Iterator:
    made: list[tuple[KubernetesOrchestrator, object]] = []

    def make(
        settings: KubernetesSettings | None = None, registry: RegistrySettings | None = None, **kwargs
    ) -> KubernetesOrchestrator:
        api_client = fake.api_client()
        orchestrator = KubernetesOrchestrator(
            settings or KubernetesSettings(), registry, api_client=api_client, namespace=fake.namespace, **kwargs
        )
        made.append((orchestrator, api_client))
        return orchestrator

    yield make
    for _, api_client in made:
        api_client.close()


@pytest.fixture
async def orchestrator(make_orchestrator) -> AsyncIterator[KubernetesOrchestrator]:
    yield make_orchestrator()
