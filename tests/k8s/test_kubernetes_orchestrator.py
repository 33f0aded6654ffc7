"""The Kubernetes orchestrator through the real `kubernetes` client, against a loopback API server."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from datetime import UTC, datetime, timedelta

import pytest
from structlog.testing import capture_logs

from xtm_composer.config.settings import KubernetesSettings, PlatformSettings, RegistrySettings
from xtm_composer.crypto import load_private_key_file, public_key_pkcs1_pem
from xtm_composer.daemon import PlatformRuntime
from xtm_composer.domain import (
    HASH_KEY,
    LABEL_MANAGER,
    ConfigEntry,
    Connector,
    CurrentStatus,
    MountedFile,
    PlatformKind,
    RequestedStatus,
    Workload,
    WorkloadSpec,
    WorkloadState,
)
from xtm_composer.emulator.encryption import encrypt_value, load_public_key
from xtm_composer.errors import (
    ConfigurationError,
    InvalidWorkloadSpec,
    OrchestratorForbidden,
    OrchestratorUnavailable,
    WorkloadConflict,
    WorkloadNotFound,
)
from xtm_composer.orchestrators.kubernetes import KubernetesOrchestrator
from xtm_composer.orchestrators.specs import build_env, ownership_labels
from xtm_composer.proxy import PROXY_CA_PATH
from xtm_composer.testing.simulated import SimulatedPlatform

from ..paths import SHARED_VECTORS

MANAGER = "k8s-manager"
LABELS = ownership_labels(manager_id=MANAGER, connector_id="c1", platform=PlatformKind.OPENCTI)
RFC1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
KEY = load_private_key_file(SHARED_VECTORS / "test-key.pkcs8.pem")


def spec(
    name: str = "abuse-ch",
    *,
    cid: str = "c1",
    hash_: str = "h1",
    env: dict[str, str] | None = None,
    sensitive: tuple[str, ...] = (),
    files: tuple[MountedFile, ...] = (),
) -> WorkloadSpec:
    entries = {"CONNECTOR_NAME": name, **(env or {})}
    return WorkloadSpec(
        name=name,
        image="opencti/connector-abuse:6.4.0",
        env=build_env(entries.items(), config_hash=hash_),
        labels=ownership_labels(manager_id=MANAGER, connector_id=cid, platform=PlatformKind.OPENCTI),
        config_hash=hash_,
        files=files,
        sensitive_keys=frozenset(sensitive),
    )


def container_of(deployment: dict) -> dict:
    return deployment["spec"]["template"]["spec"]["containers"][0]


def env_of(deployment: dict) -> dict[str, dict]:
    return {item["name"]: item for item in container_of(deployment)["env"]}


def decoded(secret: dict, key: str) -> str:
    return base64.b64decode(secret["data"][key]).decode("utf-8")


async def only(orchestrator: KubernetesOrchestrator) -> Workload:
    (workload,) = await orchestrator.list_workloads(manager_id=MANAGER)
    return workload


# -- deploy, start, stop, update --------------------------------------------------------------------
async def test_deploy_creates_one_deployment_carrying_our_labels_selector_and_hash_annotation(fake, orchestrator):
    await orchestrator.deploy(spec(), start=True)

    deployment = fake.deployment("abuse-ch")
    assert deployment["metadata"]["labels"] == LABELS
    assert deployment["spec"]["template"]["metadata"]["labels"] == LABELS
    assert deployment["spec"]["selector"] == {"matchLabels": LABELS}
    assert deployment["metadata"]["annotations"][HASH_KEY] == "h1"
    assert deployment["spec"]["replicas"] == 1
    container = container_of(deployment)
    assert (container["name"], container["image"], container["imagePullPolicy"]) == (
        "abuse-ch",
        "opencti/connector-abuse:6.4.0",
        "IfNotPresent",
    )
    workload = await only(orchestrator)
    assert (workload.state, workload.config_hash, workload.connector_id, workload.engine_id) == (
        WorkloadState.RUNNING,
        "h1",
        "c1",
        deployment["metadata"]["uid"],
    )


async def test_stop_and_start_scale_the_deployment_and_the_observed_state_follows_its_pods(fake, orchestrator):
    await orchestrator.deploy(spec(), start=False)
    assert fake.deployment("abuse-ch")["spec"]["replicas"] == 0 and fake.pods_of("abuse-ch") == []
    assert (await only(orchestrator)).state is WorkloadState.EXITED

    await orchestrator.start(await only(orchestrator))
    assert fake.deployment("abuse-ch")["spec"]["replicas"] == 1
    assert (await only(orchestrator)).state is WorkloadState.RUNNING

    await orchestrator.stop(await only(orchestrator))
    assert fake.deployment("abuse-ch")["spec"]["replicas"] == 0 and fake.pods_of("abuse-ch") == []
    assert (await only(orchestrator)).state is WorkloadState.EXITED


async def test_a_new_hash_for_an_existing_deployment_is_a_merge_patch_without_the_selector(fake, orchestrator):
    first = await orchestrator.deploy(spec(hash_="h1"), start=True)
    fake.reset_requests()

    await orchestrator.deploy(spec(hash_="h2", env={"INTERVAL": "60"}), start=True)

    writes = [r for r in fake.requests if r.resource == "deployments" and r.verb not in ("get", "list")]
    assert [w.verb for w in writes] == ["patch"]
    assert writes[0].content_type == "application/merge-patch+json"
    assert "selector" not in writes[0].body["spec"]
    deployment = fake.deployment("abuse-ch")
    assert deployment["metadata"]["uid"] == first.engine_id
    assert deployment["metadata"]["annotations"][HASH_KEY] == "h2"
    assert env_of(deployment)["INTERVAL"]["value"] == "60" and env_of(deployment)[HASH_KEY]["value"] == "h2"


async def test_after_a_composer_restart_deploy_patches_our_deployment_of_that_name(fake, make_orchestrator):
    first = await make_orchestrator().deploy(spec(hash_="h1", env={"T": "x"}, sensitive=("T",)), start=True)
    restarted = make_orchestrator()  # knows nothing of the earlier deploy
    fake.reset_requests()

    await restarted.deploy(spec(hash_="h2", env={"T": "y"}, sensitive=("T",)), start=True)

    calls = [(r.verb, r.resource) for r in fake.requests if r.resource == "deployments"]
    assert calls == [("create", "deployments"), ("get", "deployments"), ("patch", "deployments")]
    assert fake.deployment("abuse-ch")["metadata"]["uid"] == first.engine_id
    assert decoded(fake.secret("abuse-ch-secrets"), "T") == "y"


async def test_a_rust_composer_deployment_is_adopted_by_a_patch(fake, orchestrator):
    rust = {
        "metadata": {"name": "abuse-ch", "labels": LABELS, "annotations": {HASH_KEY: "h1"}},
        "spec": {  # RollingUpdate (the server default), plain env: the Rust composer's layout
            "replicas": 1,
            "selector": {"matchLabels": LABELS},
            "template": {
                "metadata": {"labels": LABELS},
                "spec": {"containers": [{"name": "abuse-ch", "image": "opencti/connector-abuse:6.4.0"}]},
            },
        },
    }
    uid = fake.put_deployment(rust)["metadata"]["uid"]
    assert (await only(orchestrator)).config_hash == "h1"

    await orchestrator.deploy(spec(hash_="h2"), start=True)

    deployment = fake.deployment("abuse-ch")
    assert deployment["metadata"]["uid"] == uid
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["metadata"]["annotations"][HASH_KEY] == "h2"


async def test_a_selector_that_no_longer_matches_our_pod_labels_is_healed_by_delete_and_recreate(
    fake, make_orchestrator
):
    legacy_labels = {**LABELS, "app.kubernetes.io/version": "1"}
    old = fake.put_deployment(
        {
            "metadata": {"name": "abuse-ch", "labels": LABELS, "annotations": {HASH_KEY: "h1"}},
            "spec": {
                "selector": {"matchLabels": legacy_labels},
                "template": {
                    "metadata": {"labels": legacy_labels},
                    "spec": {"containers": [{"name": "abuse-ch", "image": "old:1"}]},
                },
            },
        }
    )
    base = {"spec": {"template": {"metadata": {"labels": {"app.kubernetes.io/version": "2"}}}}}
    orchestrator = make_orchestrator(KubernetesSettings(base_deployment=base))

    await orchestrator.deploy(spec(hash_="h2"), start=True)

    deployment_calls = [r.verb for r in fake.requests if r.resource == "deployments" and r.verb != "list"]
    assert deployment_calls == ["create", "get", "patch", "delete", "create"]
    deployment = fake.deployment("abuse-ch")
    assert deployment["metadata"]["uid"] != old["metadata"]["uid"]
    assert deployment["spec"]["selector"] == {"matchLabels": LABELS}
    assert (await only(orchestrator)).state is WorkloadState.RUNNING


async def test_any_other_422_is_an_invalid_spec_naming_the_field_without_the_secret_value(fake, orchestrator):
    first = await orchestrator.deploy(spec(hash_="h1"), start=True)
    secret = "hunter2-very-secret"
    field = "spec.template.spec.containers[0].env[1].value"
    fake.fail(
        "patch",
        "deployments",
        code=422,
        message=f'Deployment.apps "abuse-ch" is invalid: {field}: Invalid value: "{secret}": too long',
        causes=[(field, f'Invalid value: "{secret}": too long')],
    )

    with pytest.raises(InvalidWorkloadSpec) as raised:
        await orchestrator.deploy(spec(hash_="h2", env={"TOKEN": secret}, sensitive=("TOKEN",)), start=True)

    assert field in str(raised.value) and secret not in str(raised.value)
    assert not [r for r in fake.requests if r.verb == "delete" and r.resource == "deployments"]
    deployment = fake.deployment("abuse-ch")
    assert deployment["metadata"]["uid"] == first.engine_id
    assert deployment["metadata"]["annotations"][HASH_KEY] == "h1"


async def test_a_deployment_of_that_name_without_our_labels_is_a_conflict_left_untouched(fake, orchestrator):
    foreign = fake.put_deployment(
        {
            "metadata": {"name": "abuse-ch", "labels": {"app": "abuse-ch"}},
            "spec": {
                "selector": {"matchLabels": {"app": "abuse-ch"}},
                "template": {
                    "metadata": {"labels": {"app": "abuse-ch"}},
                    "spec": {"containers": [{"name": "web", "image": "nginx:1"}]},
                },
            },
        }
    )

    with pytest.raises(WorkloadConflict):
        await orchestrator.deploy(spec(env={"TOKEN": "t0ken-value"}, sensitive=("TOKEN",)), start=True)

    assert fake.deployment("abuse-ch") == foreign
    assert fake.secret("abuse-ch-secrets") is None


# -- the Deployment's content -------------------------------------------------------------------
BASE = {
    "metadata": {"labels": {"team": "cti", LABEL_MANAGER: "theirs"}, "annotations": {"owner": "secops"}},
    "spec": {
        "replicas": 5,
        "selector": {"matchLabels": {"team": "cti"}},
        "template": {
            "metadata": {"labels": {"team": "cti"}},
            "spec": {
                "serviceAccountName": "connectors",
                "nodeSelector": {"pool": "cti"},
                "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "cti", "effect": "NoSchedule"}],
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000},
                "containers": [
                    {"name": "log-shipper", "image": "fluent-bit:3"},
                    {  # no name: defaults for the connector container
                        "image": "theirs:1",
                        "resources": {"limits": {"memory": "1Gi"}},
                        "securityContext": {"readOnlyRootFilesystem": True},
                        "env": [{"name": "CONNECTOR_NAME", "value": "theirs"}, {"name": "EXTRA", "value": "kept"}],
                    },
                ],
            },
        },
    },
}


@pytest.mark.parametrize(
    "settings",
    [KubernetesSettings(base_deployment=BASE), KubernetesSettings(base_deployment_json=json.dumps(BASE))],
    ids=["yaml-object", "json-text"],
)
async def test_the_base_deployment_is_merged_under_ours(fake, make_orchestrator, settings):
    await make_orchestrator(settings).deploy(spec(), start=True)

    deployment = fake.deployment("abuse-ch")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == "connectors"
    assert pod["nodeSelector"] == {"pool": "cti"}
    assert pod["tolerations"] == BASE["spec"]["template"]["spec"]["tolerations"]
    assert pod["securityContext"] == {"runAsNonRoot": True, "runAsUser": 1000}
    ours, sidecar = pod["containers"]
    assert sidecar == {"name": "log-shipper", "image": "fluent-bit:3"}
    assert (ours["name"], ours["image"]) == ("abuse-ch", "opencti/connector-abuse:6.4.0")
    assert ours["resources"] == {"limits": {"memory": "1Gi"}}
    assert ours["securityContext"] == {"readOnlyRootFilesystem": True}
    assert env_of(deployment)["CONNECTOR_NAME"]["value"] == "abuse-ch"
    assert env_of(deployment)["EXTRA"]["value"] == "kept"
    assert deployment["metadata"]["labels"] == {"team": "cti", **LABELS}
    assert deployment["metadata"]["annotations"] == {"owner": "secops", HASH_KEY: "h1"}
    assert deployment["spec"]["selector"] == {"matchLabels": LABELS}
    assert deployment["spec"]["replicas"] == 1


async def test_sensitive_values_live_only_in_the_connector_secret(fake, orchestrator):
    token = "s3cr3t-tökén-value"
    await orchestrator.deploy(spec(env={"PLAIN": "visible", "API_TOKEN": token}, sensitive=("API_TOKEN",)), start=True)

    deployment = fake.deployment("abuse-ch")
    sent = json.dumps([r.body for r in fake.requests if r.resource == "deployments"], ensure_ascii=False)
    for text in (json.dumps(deployment, ensure_ascii=False), sent):
        assert token not in text and base64.b64encode(token.encode()).decode() not in text
    assert env_of(deployment)["API_TOKEN"] == {
        "name": "API_TOKEN",
        "valueFrom": {"secretKeyRef": {"name": "abuse-ch-secrets", "key": "API_TOKEN"}},
    }
    assert env_of(deployment)["PLAIN"] == {"name": "PLAIN", "value": "visible"}
    secret = fake.secret("abuse-ch-secrets")
    assert decoded(secret, "API_TOKEN") == token and set(secret["data"]) == {"API_TOKEN"}
    assert secret["metadata"]["labels"][LABEL_MANAGER] == MANAGER


async def test_registry_credentials_become_one_dockerconfigjson_pull_secret(fake, make_orchestrator):
    registry = RegistrySettings(server="https://registry.example.org:5000/", username="robot$ci", password="pa:ss w0rd")
    orchestrator = make_orchestrator(registry=registry)
    await orchestrator.deploy(spec("abuse-ch", cid="c1"), start=True)
    await orchestrator.deploy(spec("mitre", cid="c2"), start=True)

    (name,) = [r.body["metadata"]["name"] for r in fake.requests if r.verb == "create" and r.resource == "secrets"]
    assert RFC1123_SUBDOMAIN.match(name) and len(name) <= 253
    secret = fake.secret(name)
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    auths = json.loads(decoded(secret, ".dockerconfigjson"))["auths"]
    assert list(auths) == ["registry.example.org:5000"]
    assert base64.b64decode(auths["registry.example.org:5000"]["auth"]).decode() == "robot$ci:pa:ss w0rd"
    for workload in ("abuse-ch", "mitre"):
        deployment = fake.deployment(workload)
        assert deployment["spec"]["template"]["spec"]["imagePullSecrets"] == [{"name": name}]
        assert container_of(deployment)["image"] == "registry.example.org:5000/opencti/connector-abuse:6.4.0"
        assert "pa:ss w0rd" not in json.dumps(deployment)


async def test_the_proxy_ca_bundle_is_mounted_read_only_from_the_connector_secret(fake, orchestrator):
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    await orchestrator.deploy(spec(files=(MountedFile(PROXY_CA_PATH, pem),)), start=True)

    deployment = fake.deployment("abuse-ch")
    (mount,) = container_of(deployment)["volumeMounts"]
    assert mount["mountPath"] == PROXY_CA_PATH and mount["readOnly"] is True
    (volume,) = [v for v in deployment["spec"]["template"]["spec"]["volumes"] if v["name"] == mount["name"]]
    assert volume["secret"]["secretName"] == "abuse-ch-secrets"
    (item,) = volume["secret"]["items"]
    assert item["path"] == mount["subPath"]
    assert decoded(fake.secret("abuse-ch-secrets"), item["key"]) == pem


async def test_image_settings_reach_the_connector_container(fake, make_orchestrator):
    resources = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": 536870912}}
    settings = KubernetesSettings(image_pull_policy="always", image_resources=resources)

    await make_orchestrator(settings).deploy(spec(), start=True)

    container = container_of(fake.deployment("abuse-ch"))
    assert container["imagePullPolicy"] == "Always" and container["resources"] == resources


async def test_an_invalid_image_pull_policy_is_warned_about_and_replaced_by_the_default(fake, make_orchestrator):
    with capture_logs() as logs:
        orchestrator = make_orchestrator(KubernetesSettings(image_pull_policy="Sometimes"))
    await orchestrator.deploy(spec(), start=True)

    assert any("image_pull_policy" in entry["event"] and entry["log_level"] == "warning" for entry in logs)
    assert container_of(fake.deployment("abuse-ch"))["imagePullPolicy"] == "IfNotPresent"


# -- observed state, health, logs ----------------------------------------------------------------
async def test_crashloopbackoff_is_not_up_and_health_reports_the_reboot_loop(fake, orchestrator):
    await orchestrator.deploy(spec(), start=True)
    fake.set_pod_state("abuse-ch", "crashloop", restart_count=5, started_at=datetime.now(UTC) - timedelta(minutes=1))
    fake.set_logs("abuse-ch", previous=["Starting connector", "ValueError: bad API key"])

    workload = await only(orchestrator)
    assert not workload.state.is_up and workload.state is not WorkloadState.RESTARTING
    assert workload.detail.startswith("CrashLoopBackOff")
    health = await orchestrator.health(workload)
    assert (health.restart_count, health.is_in_reboot_loop, health.reason) == (5, True, "CrashLoopBackOff")
    lines = await orchestrator.logs(workload, tail=100)
    assert lines[:2] == ["Starting connector", "ValueError: bad API key"]
    assert "CrashLoopBackOff" in lines[-1] and "restarts: 5" in lines[-1]


async def test_image_pull_backoff_is_not_started_and_says_why(fake, orchestrator):
    await orchestrator.deploy(spec(), start=True)
    fake.set_pod_state("abuse-ch", "image_pull_backoff")

    workload = await only(orchestrator)
    assert not workload.state.is_up and workload.detail.startswith("ImagePullBackOff")
    fake.reset_requests()
    (line,) = await orchestrator.logs(workload, tail=100)
    assert "ImagePullBackOff" in line
    assert fake.requests == []  # a container that never ran has no logs to ask for


async def test_a_deployment_without_a_pod_yet_is_pending(fake, orchestrator):
    await orchestrator.deploy(spec(), start=True)
    fake.set_pod_state("abuse-ch", "none")

    workload = await only(orchestrator)
    assert workload.state is WorkloadState.PENDING and not workload.state.is_up
    health = await orchestrator.health(workload)
    assert (health.restart_count, health.started_at, health.is_in_reboot_loop) == (0, None, False)


async def test_a_running_pod_gives_its_start_time_and_logs_after_its_crashed_predecessors(fake, orchestrator):
    await orchestrator.deploy(spec(), start=True)
    started = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    fake.set_pod_state("abuse-ch", "running", restart_count=4, started_at=started, crashed_before=True)
    fake.set_logs("abuse-ch", previous=[f"old {i}" for i in range(150)], current=["started", "working"])

    workload = await only(orchestrator)
    health = await orchestrator.health(workload)
    assert (health.restart_count, health.started_at, health.is_in_reboot_loop) == (4, started, False)
    lines = await orchestrator.logs(workload, tail=100)
    assert lines == [*(f"old {i}" for i in range(50, 150)), "started", "working"]


@pytest.mark.parametrize("connectors", [1, 12])
async def test_a_steady_listing_is_two_api_calls_whatever_the_number_of_connectors(fake, orchestrator, connectors):
    for index in range(connectors):
        await orchestrator.deploy(spec(f"connector-{index}", cid=f"c{index}"), start=True)
    fake.reset_requests()

    workloads = await orchestrator.list_workloads(manager_id=MANAGER)
    for workload in workloads:
        assert not (await orchestrator.health(workload)).is_in_reboot_loop

    assert len(workloads) == connectors
    assert sorted((r.verb, r.resource) for r in fake.requests) == [("list", "deployments"), ("list", "pods")]


async def test_health_right_after_a_deploy_reads_the_pods_once(fake, orchestrator):
    await orchestrator.deploy(spec(), start=True)
    fake.reset_requests()

    health = await orchestrator.health(Workload(name="abuse-ch", state=WorkloadState.UNKNOWN))

    assert health.started_at is not None
    assert [(r.verb, r.resource) for r in fake.requests] == [("list", "pods")]


# -- remove -----------------------------------------------------------------------------------------
async def test_remove_deletes_the_deployment_its_pods_and_its_secret_and_tolerates_it_gone(fake, orchestrator):
    await orchestrator.deploy(spec(env={"T": "v4lue"}, sensitive=("T",)), start=True)
    workload = await only(orchestrator)

    await orchestrator.remove(workload)
    await orchestrator.remove(workload)

    assert fake.deployment("abuse-ch") is None and fake.pods_of("abuse-ch") == []
    assert fake.secret("abuse-ch-secrets") is None
    assert await orchestrator.list_workloads(manager_id=MANAGER) == []


async def test_removing_a_stale_workload_never_deletes_a_newer_deployment_of_that_name(fake, orchestrator):
    await orchestrator.deploy(spec(env={"T": "v4lue"}, sensitive=("T",)), start=True)
    stale = await only(orchestrator)
    await orchestrator.remove(stale)
    newer = await orchestrator.deploy(spec(env={"T": "v4lue"}, sensitive=("T",)), start=True)

    await orchestrator.remove(stale)

    assert fake.deployment("abuse-ch")["metadata"]["uid"] == newer.engine_id
    assert fake.secret("abuse-ch-secrets") is not None


# -- API errors ---------------------------------------------------------------------------------------
ERRORS = [
    pytest.param(
        lambda f: f.forbid("list", "deployments", group="apps"),
        "list",
        OrchestratorForbidden,
        ["may not list deployments.apps in namespace xtm", "system:serviceaccount:xtm:xtm-composer"],
        id="403-list",
    ),
    pytest.param(
        lambda f: f.forbid("get", "pods/log"),
        "logs",
        OrchestratorForbidden,
        ["may not get pods/log in namespace xtm"],
        id="403-logs",
    ),
    pytest.param(
        lambda f: f.fail(None, None, code=401, message="Unauthorized", reason="Unauthorized"),
        "list",
        OrchestratorForbidden,
        ["401"],
        id="401",
    ),
    pytest.param(
        lambda f: f.fail("patch", "deployments", code=404, message='deployments.apps "abuse-ch" not found'),
        "start",
        WorkloadNotFound,
        ['deployments.apps "abuse-ch" not found'],
        id="404",
    ),
    pytest.param(
        lambda f: f.fail("patch", "deployments", code=409, message="the object has been modified", reason="Conflict"),
        "start",
        WorkloadConflict,
        ["the object has been modified"],
        id="409",
    ),
    pytest.param(
        lambda f: f.fail("list", "pods", code=503, message="etcdserver: leader changed"),
        "list",
        OrchestratorUnavailable,
        ["503", "leader changed"],
        id="503",
    ),
]


@pytest.mark.parametrize(("fault", "call", "error", "words"), ERRORS)
async def test_api_errors_become_the_composers_errors(fake, orchestrator, fault, call, error, words):
    await orchestrator.deploy(spec(), start=False)
    workload = await only(orchestrator)
    fault(fake)

    with pytest.raises(error) as raised:
        if call == "list":
            await orchestrator.list_workloads(manager_id=MANAGER)
        elif call == "start":
            await orchestrator.start(workload)
        else:
            await orchestrator.start(workload)
            await orchestrator.logs(Workload(name="abuse-ch", state=WorkloadState.UNKNOWN), tail=10)

    for word in words:
        assert word in str(raised.value)


async def test_an_unreachable_or_slow_api_server_is_unavailable(fake, make_orchestrator):
    orchestrator = make_orchestrator(KubernetesSettings(request_timeout=0.2))
    fake.delay = 0.5
    with pytest.raises(OrchestratorUnavailable):
        await orchestrator.list_workloads(manager_id=MANAGER)
    fake.delay = 0
    fake.stop()
    with pytest.raises(OrchestratorUnavailable):
        await orchestrator.list_workloads(manager_id=MANAGER)


# -- through the planner and executor -----------------------------------------------------------------
def connector(cid: str, name: str, *, hash_: str = "h1", config: tuple[ConfigEntry, ...] = ()) -> Connector:
    return Connector(
        id=cid,
        name=name,
        image="opencti/connector-demo:6.4.0",
        contract_hash=hash_,
        requested_status=RequestedStatus.STARTING,
        current_status=None,
        config=config,
    )


def runtime(platform: SimulatedPlatform, orchestrator: KubernetesOrchestrator, clock=lambda: 1000.0, **kwargs):
    return PlatformRuntime(
        kind=PlatformKind.OPENCTI,
        platform=platform,
        orchestrator=orchestrator,
        settings=PlatformSettings(enable=True, url="http://sim", token="t"),
        manager_id=MANAGER,
        manager_name="k8s",
        private_key=KEY,
        execute_schedule=10,
        ping_alive_schedule=60,
        clock=clock,
        **kwargs,
    )


def encrypted(key: str, value: str) -> ConfigEntry:
    public = load_public_key(public_key_pkcs1_pem(KEY))
    return ConfigEntry(key=key, value=encrypt_value(value, public), encrypted=True)


async def test_orphans_and_renamed_connectors_are_cleaned_up_by_the_planner(fake, orchestrator):
    platform = SimulatedPlatform(
        [connector("c1", "Abuse.ch URLhaus"), connector("c2", "Mitre", config=(encrypted("MITRE_TOKEN", "tok3n"),))]
    )
    rt = runtime(platform, orchestrator)
    first = await rt.reconcile_once()
    assert not first.report.failures
    assert set(fake.deployments) == {"abuse-ch-urlhaus", "mitre"} and "mitre-secrets" in fake.secrets
    assert {c.current_status for c in platform.connectors.values()} == {CurrentStatus.STARTED}

    del platform.connectors["c2"]  # deleted on the platform: an orphan
    platform.connectors["c1"] = connector("c1", "URLhaus v2")  # renamed: a new name, the old one stale
    second = await rt.reconcile_once()

    assert not second.report.failures
    assert set(fake.deployments) == {"urlhaus-v2"} and "mitre-secrets" not in fake.secrets
    assert fake.pods_of("abuse-ch-urlhaus") == [] and fake.pods_of("mitre") == []
    assert (await rt.observe_and_plan())[1].actions == ()


async def test_a_forbidden_action_fails_alone_and_a_later_pass_recovers(fake, orchestrator):
    now = [1000.0]
    platform = SimulatedPlatform([connector("c1", "Abuse"), connector("c2", "Mitre")])
    rt = runtime(platform, orchestrator, clock=lambda: now[0])
    fake.forbid("create", "deployments", group="apps")

    first = await rt.reconcile_once()

    assert {type(o.action).__name__ for o in first.report.failures} == {"Deploy"}
    assert all("may not create deployments.apps" in o.error for o in first.report.failures)
    fake.allow()
    now[0] += 3600  # past the connectors' back-off
    second = await rt.reconcile_once()
    assert not second.report.failures and set(fake.deployments) == {"abuse", "mitre"}


async def test_the_reconcile_loop_keeps_running_through_a_forbidden_listing(fake, orchestrator):
    rt = runtime(SimulatedPlatform([connector("c1", "Abuse")]), orchestrator)
    rt.execute_schedule = 0.01
    rt.registered.set()
    fake.forbid("list", "deployments", group="apps")
    with pytest.raises(OrchestratorForbidden):
        await rt.reconcile_once()

    stop = asyncio.Event()
    with capture_logs() as logs:
        loop = asyncio.create_task(rt.reconcile_loop(stop))
        for _ in range(500):
            if sum(r.verb == "list" and r.resource == "deployments" for r in fake.requests) >= 4:
                break
            await asyncio.sleep(0.01)
        fake.allow()
        for _ in range(500):
            if "abuse" in fake.deployments:
                break
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(loop, timeout=5)

    assert "abuse" in fake.deployments
    assert any("may not list deployments.apps" in str(entry.get("error", "")) for entry in logs)


async def test_two_deployments_of_one_connector_are_each_read_from_their_own_pods(fake, orchestrator):
    # A rename in progress: the old and the new Deployment share the connector's selector.
    await orchestrator.deploy(spec("abuse-ch"), start=True)
    await orchestrator.deploy(spec("urlhaus"), start=True)
    fake.set_pod_state("abuse-ch", "crashloop", restart_count=7)

    states = {w.name: w.state for w in await orchestrator.list_workloads(manager_id=MANAGER)}

    assert states == {"abuse-ch": WorkloadState.PENDING, "urlhaus": WorkloadState.RUNNING}


# -- client configuration -----------------------------------------------------------------------------
def kubeconfig(path, host: str) -> str:
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "fake", "cluster": {"server": host}}],
                "users": [{"name": "composer", "user": {"token": "t0ken"}}],
                "contexts": [
                    {"name": "other", "context": {"cluster": "fake", "user": "composer", "namespace": "elsewhere"}},
                    {"name": "composer", "context": {"cluster": "fake", "user": "composer", "namespace": "xtm"}},
                ],
                "current-context": "other",
            }
        )
    )
    return str(path)


async def test_a_kubeconfig_context_gives_the_server_and_the_namespace(fake, tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    settings = KubernetesSettings(kubeconfig=kubeconfig(tmp_path / "config", fake.host), context="composer")
    orchestrator = KubernetesOrchestrator(settings, None)
    try:
        await orchestrator.deploy(spec(), start=True)
    finally:
        await orchestrator.close()
    assert orchestrator.namespace == "xtm" and fake.deployment("abuse-ch") is not None


def test_a_missing_kubeconfig_is_a_configuration_error(tmp_path, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ConfigurationError, match=r"daemon\.kubernetes"):
        KubernetesOrchestrator(KubernetesSettings(kubeconfig=str(tmp_path / "missing")), None)
