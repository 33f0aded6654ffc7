"""Pure Kubernetes builders and readings: manifests, merges, pod states, API error texts."""

from __future__ import annotations

import re

import pytest

from xtm_composer.config.settings import KubernetesSettings, RegistrySettings
from xtm_composer.domain import WorkloadState
from xtm_composer.errors import ConfigurationError
from xtm_composer.orchestrators import k8s_observe as observe
from xtm_composer.orchestrators import k8s_specs as specs

RFC1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Always", ("Always", True)),
        ("ifnotpresent", ("IfNotPresent", True)),
        (" Never ", ("Never", True)),
        ("Sometimes", ("IfNotPresent", False)),
        ("", ("IfNotPresent", False)),
    ],
)
def test_pull_policy_is_one_of_the_three_kubernetes_values(raw, expected):
    assert specs.pull_policy(raw) == expected


@pytest.mark.parametrize(
    "settings",
    [
        KubernetesSettings(image_resources={"cpu": "1"}),
        KubernetesSettings(image_resources={"limits": "1Gi"}),
        KubernetesSettings(base_deployment_json="{not json"),
        KubernetesSettings(base_deployment_json="[1, 2]"),
        KubernetesSettings(base_deployment={"spec": {"template": {"spec": {"containers": [{}, {"image": "x"}]}}}}),
    ],
    ids=["flat-resources", "limits-not-a-map", "bad-json", "json-not-an-object", "two-nameless-containers"],
)
def test_bad_kubernetes_settings_are_configuration_errors(settings):
    with pytest.raises(ConfigurationError, match=r"daemon\.kubernetes"):
        specs.image_resources(settings.image_resources)
        specs.base_deployment(settings)


def test_a_base_copied_from_a_live_object_loses_its_server_fields_selector_and_replicas():
    base = specs.base_deployment(
        KubernetesSettings(
            base_deployment={
                "metadata": {"name": "x", "namespace": "n", "uid": "u", "resourceVersion": "1", "labels": {"a": "b"}},
                "spec": {"replicas": 3, "selector": {"matchLabels": {"a": "b"}}, "paused": False},
                "status": {"replicas": 3},
            }
        )
    )
    assert base == {"metadata": {"labels": {"a": "b"}}, "spec": {"paused": False}}


@pytest.mark.parametrize(
    ("base", "top", "merged"),
    [
        ({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": 9}}, {"a": 1, "b": {"c": 9, "d": 3}}),
        ({"tolerations": [{"key": "x"}]}, {"tolerations": [{"key": "y"}]}, {"tolerations": [{"key": "y"}]}),
        (
            {"containers": [{"name": "side", "image": "s"}, {"name": "app", "image": "old", "tty": True}]},
            {"containers": [{"name": "app", "image": "new"}]},
            {"containers": [{"name": "app", "image": "new", "tty": True}, {"name": "side", "image": "s"}]},
        ),
        (
            {"env": [{"name": "A", "value": "theirs"}, {"name": "B", "value": "b"}]},
            {"env": [{"name": "A", "value": "ours"}]},
            {"env": [{"name": "A", "value": "ours"}, {"name": "B", "value": "b"}]},
        ),
        ({"x": {"y": 1}}, {"x": "scalar"}, {"x": "scalar"}),
    ],
    ids=["maps-deep", "plain-list-replaced", "containers-by-name", "env-by-name", "scalar-wins"],
)
def test_merge_under_lets_the_top_win_and_keeps_the_rest(base, top, merged):
    assert specs.merge_under(base, top) == merged


def test_an_update_patch_has_no_selector_and_deletes_what_the_manifest_no_longer_sets():
    manifest = {
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "strategy": {"type": "Recreate"},
            "template": {"spec": {"containers": [{"name": "c"}]}},
        }
    }
    current = {"spec": {"template": {"spec": {"containers": [], "nodeSelector": {"pool": "old"}}}}}
    patch = specs.update_patch(manifest, current)
    assert "selector" not in patch["spec"]
    assert patch["spec"]["strategy"] == {"type": "Recreate", "rollingUpdate": None}
    assert patch["spec"]["template"]["spec"]["nodeSelector"] is None


def test_a_secret_patch_deletes_the_keys_no_longer_sensitive():
    current = {"data": {"OLD": "eA==", "KEEP": "eA=="}}
    desired = {"metadata": {"labels": {"l": "v"}}, "data": {"KEEP": "eQ==", "NEW": "eg=="}}
    assert specs.secret_patch(current, desired) == {
        "metadata": {"labels": {"l": "v"}},
        "data": {"OLD": None, "KEEP": "eQ==", "NEW": "eg=="},
    }


@pytest.mark.parametrize(
    "server", [None, "docker.io", "https://Registry.Example.org:5000/", "localhost:5000/team/", "ghcr.io/Org_x"]
)
def test_the_pull_secret_name_is_a_valid_rfc1123_name_whatever_the_server(server):
    name = specs.pull_secret_name(RegistrySettings(server=server, username="u"), manager_id="Manager ID ✓")
    assert RFC1123_SUBDOMAIN.match(name) and len(name) <= 253


@pytest.mark.parametrize(
    ("text", "secrets", "expected"),
    [
        ('Invalid value: "ab": bad', ["ab"], 'Invalid value: "***REDACTED***": bad'),
        ("token hunter2x leaked", ["hunter2x"], "token ***REDACTED*** leaked"),
        ("a bad cab", ["ab"], "a bad cab"),  # a short value is masked only as a whole quoted value
        ('"x\\"y"', ['x"y'], '"***REDACTED***"'),
    ],
    ids=["quoted-short", "substring", "short-unquoted-kept", "escaped-quote"],
)
def test_mask_removes_secret_values_from_messages(text, secrets, expected):
    assert observe.mask(text, secrets) == expected


def test_a_forbidden_message_names_the_missing_verb_resource_and_namespace():
    status = observe.ApiStatus(
        code=403,
        message='pods "p" is forbidden: User "system:serviceaccount:xtm:c" cannot get resource "pods/log" '
        'in API group "" in the namespace "xtm"',
    )
    text = observe.forbidden_explanation(status)
    assert "may not get pods/log in namespace xtm" in text and "system:serviceaccount:xtm:c" in text


@pytest.mark.parametrize(
    ("status", "selector"),
    [
        (
            observe.ApiStatus(
                422, causes=(("spec.template.metadata.labels", "`selector` does not match template `labels`"),)
            ),
            True,
        ),
        (
            observe.ApiStatus(
                422, message='Deployment.apps "x" is invalid: spec.selector: Invalid value: {}: field is immutable'
            ),
            True,
        ),
        (observe.ApiStatus(422, causes=(("spec.template.spec.containers[0].image", "Required value"),)), False),
        (observe.ApiStatus(409, message="selector does not match"), False),
    ],
    ids=["mismatch", "immutable", "other-422", "not-a-422"],
)
def test_only_a_422_about_the_selector_calls_for_a_recreate(status, selector):
    assert observe.is_selector_mismatch(status) is selector


def pod(state: dict, *, restarts: int = 0, last: dict | None = None, created: str = "2024-01-01T00:00:00Z") -> dict:
    status = {"name": "c", "restartCount": restarts, "state": state}
    if last:
        status["lastState"] = {"terminated": last}
    return {
        "metadata": {"name": f"p-{created}", "creationTimestamp": created},
        "status": {"containerStatuses": [status]},
    }


RUNNING = {"running": {"startedAt": "2024-01-01T00:00:05Z"}}
CRASHED = {"exitCode": 1, "startedAt": "2024-01-01T00:01:00Z"}


@pytest.mark.parametrize(
    ("pods", "replicas", "state", "reason", "has_logs"),
    [
        ([pod(RUNNING)], 1, WorkloadState.RUNNING, None, True),
        (
            [pod({"waiting": {"reason": "CrashLoopBackOff"}}, restarts=4, last=CRASHED)],
            1,
            WorkloadState.PENDING,
            "CrashLoopBackOff",
            True,
        ),
        ([pod({"waiting": {"reason": "ImagePullBackOff"}})], 1, WorkloadState.PENDING, "ImagePullBackOff", False),
        ([pod({"waiting": {"reason": "ContainerCreating"}})], 1, WorkloadState.PENDING, "ContainerCreating", False),
        ([], 1, WorkloadState.PENDING, "NoPod", False),
        ([pod(RUNNING)], 0, WorkloadState.EXITED, None, False),
        (
            [pod({"waiting": {"reason": "ErrImagePull"}}, created="2024-01-01T00:00:09Z"), pod(RUNNING)],
            1,
            WorkloadState.PENDING,
            "ErrImagePull",
            False,
        ),
    ],
    ids=["running", "crashloop", "image-pull", "creating", "no-pod", "scaled-to-zero", "newest-pod-wins"],
)
def test_the_state_comes_from_the_newest_pod(pods, replicas, state, reason, has_logs):
    reading = observe.read_pods(pods, container="c", replicas=replicas)
    assert (reading.state, reading.reason, reading.has_logs) == (state, reason, has_logs)


def test_a_container_waiting_after_crashes_counts_its_last_run_as_its_start():
    reading = observe.read_pods(
        [pod({"waiting": {"reason": "CrashLoopBackOff"}}, restarts=4, last=CRASHED)], container="c", replicas=1
    )
    assert reading.restart_count == 4 and reading.started_at == observe.parse_time(CRASHED["startedAt"])
