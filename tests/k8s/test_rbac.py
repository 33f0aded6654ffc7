"""The Role in deploy/kubernetes grants exactly what the orchestrator uses; the composer's own
Deployment runs under it and reads its key from a Secret file."""

from __future__ import annotations

from pathlib import Path

import yaml

from xtm_composer.config.settings import RegistrySettings
from xtm_composer.domain import MountedFile, PlatformKind, WorkloadSpec
from xtm_composer.orchestrators.specs import build_env, ownership_labels
from xtm_composer.proxy import PROXY_CA_PATH

from ..paths import PROJECT_ROOT
from .conftest import granted

DEPLOY = PROJECT_ROOT / "deploy" / "kubernetes"
MANAGER = "rbac-manager"


def documents(path: Path) -> dict[str, dict]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc}


def role_grants() -> set[tuple[str, str, str]]:
    role = documents(DEPLOY / "rbac.yaml")["Role"]
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def spec(hash_: str) -> WorkloadSpec:
    return WorkloadSpec(
        name="abuse-ch",
        image="opencti/connector-abuse:6.4.0",
        env=build_env([("TOKEN", f"t0ken-{hash_}")], config_hash=hash_),
        labels=ownership_labels(manager_id=MANAGER, connector_id="c1", platform=PlatformKind.OPENCTI),
        config_hash=hash_,
        files=(MountedFile(PROXY_CA_PATH, "pem"),),
        sensitive_keys=frozenset({"TOKEN"}),
    )


def test_the_role_grants_exactly_the_orchestrators_rbac_table():
    assert role_grants() == granted()


async def test_a_full_lifecycle_uses_every_granted_verb_and_no_other(fake, make_orchestrator):
    registry = RegistrySettings(server="registry.example.org", username="u", password="p")
    await make_orchestrator(registry=registry).deploy(spec("h1"), start=True)
    restarted = make_orchestrator(registry=registry)  # finds everything already there
    await restarted.deploy(spec("h2"), start=True)
    (workload,) = await restarted.list_workloads(manager_id=MANAGER)
    await restarted.logs(workload, tail=10)
    await restarted.stop(workload)
    await restarted.remove(workload)

    assert fake.verbs() == granted()


def test_the_role_is_bound_to_the_service_account_the_composer_runs_as():
    rbac = documents(DEPLOY / "rbac.yaml")
    binding, account = rbac["RoleBinding"], rbac["ServiceAccount"]
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": rbac["Role"]["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"]}]
    composer = documents(DEPLOY / "composer.yaml")["Deployment"]
    assert composer["spec"]["template"]["spec"]["serviceAccountName"] == account["metadata"]["name"]


def test_the_composer_reads_its_key_from_a_secret_file_of_mode_0400():
    pod = documents(DEPLOY / "composer.yaml")["Deployment"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    env = {item["name"]: item for item in container["env"]}
    key_path = Path(env["MANAGER__CREDENTIALS_KEY_FILEPATH"]["value"])
    assert "MANAGER__CREDENTIALS_KEY" not in env
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == key_path.parent]
    assert mount["readOnly"] is True
    (volume,) = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["defaultMode"] == 0o400
    assert [item["path"] for item in volume["secret"]["items"]] == [key_path.name]
