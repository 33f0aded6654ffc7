"""Pure builders for the Kubernetes orchestrator: the Deployment and Secrets of one connector.

No I/O and no client objects: manifests are plain JSON-ready dicts, so every rule is a table
test. Layering of a Deployment, lowest first: our defaults (Recreate strategy, short history),
the operator's `base_deployment`, then ours (name, labels, selector, replicas, the connector
container, its env, pull secret, mounted files). Ours wins; the base keeps everything else
(tolerations, node selectors, security context, service account, sidecars, …).

Secret values never appear in a Deployment: sensitive env entries become `secretKeyRef`s to a
per-connector Secret, which also carries the mounted files (the proxy CA bundle).
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from xtm_composer.config.settings import KubernetesSettings, RegistrySettings
from xtm_composer.domain import HASH_KEY, LABEL_CONNECTOR_ID, LABEL_MANAGER, LABEL_PLATFORM, WorkloadSpec
from xtm_composer.errors import ConfigurationError

PULL_POLICIES = ("Always", "IfNotPresent", "Never")
DEFAULT_PULL_POLICY = "IfNotPresent"
RESOURCE_KEYS = frozenset({"requests", "limits", "claims"})
# Where `docker login` (and so every registry client) files Docker Hub credentials.
DOCKER_HUB_AUTH_SERVER = "https://index.docker.io/v1/"
CONNECTOR_SECRET_SUFFIX = "-secrets"
FILES_VOLUME = "xtm-composer-files"
# Secret keys may start with ".", env names may not: file keys never collide with env keys.
FILE_KEY_PREFIX = ".file-"
MANAGED_BY = {"app.kubernetes.io/managed-by": "xtm-composer"}

# Below the operator's base: connectors must not run twice at once (RollingUpdate would start the
# new pod before stopping the old one), and old ReplicaSets are clutter.
DEPLOYMENT_DEFAULTS: dict[str, Any] = {"spec": {"strategy": {"type": "Recreate"}, "revisionHistoryLimit": 2}}

# Lists merged item by item on a key (as Kubernetes' strategic merge does); others are replaced.
_LIST_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "ports": "containerPort",
}
# Fields of a stored object that a base copied from `kubectl get -o yaml` may carry and we must not send.
_SERVER_METADATA = ("name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields")


# -- settings ---------------------------------------------------------------------------------
def pull_policy(raw: str | None) -> tuple[str, bool]:
    """(policy to use, whether `raw` was valid). Case-insensitive; anything else: the default."""
    for policy in PULL_POLICIES:
        if raw is not None and raw.strip().lower() == policy.lower():
            return policy, True
    return DEFAULT_PULL_POLICY, False


def image_resources(raw: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`daemon.kubernetes.image_resources` as a container `resources` object (requests/limits)."""
    if not raw:
        return None
    unknown = sorted(set(raw) - RESOURCE_KEYS)
    if unknown:
        raise ConfigurationError(
            f"daemon.kubernetes.image_resources: unknown key(s) {', '.join(unknown)} "
            "(expected requests and/or limits, e.g. {limits: {cpu: '1', memory: 1Gi}})"
        )
    for key in ("requests", "limits"):
        if key in raw and not isinstance(raw[key], Mapping):
            raise ConfigurationError(f"daemon.kubernetes.image_resources.{key}: expected a mapping of quantities")
    return copy.deepcopy(dict(raw))


def base_deployment(settings: KubernetesSettings) -> dict[str, Any]:
    """The operator's base Deployment (`base_deployment`, else `base_deployment_json`), cleaned."""
    raw: Any = settings.base_deployment
    key = "daemon.kubernetes.base_deployment"
    if raw is None and settings.base_deployment_json and settings.base_deployment_json.strip():
        key = "daemon.kubernetes.base_deployment_json"
        try:
            raw = json.loads(settings.base_deployment_json)
        except ValueError as exc:
            raise ConfigurationError(f"{key}: not valid JSON ({exc})") from None
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ConfigurationError(f"{key}: expected a Deployment object")
    base = copy.deepcopy(dict(raw))
    base.pop("status", None)
    metadata = base.get("metadata")
    if isinstance(metadata, dict):
        for field in _SERVER_METADATA:
            metadata.pop(field, None)
    spec = base.get("spec")
    if isinstance(spec, dict):
        spec.pop("selector", None)  # ours, exactly: the selector is immutable
        spec.pop("replicas", None)
    containers = _dig(base, "spec", "template", "spec", "containers")
    if containers is not None:
        if not isinstance(containers, list) or not all(isinstance(c, Mapping) for c in containers):
            raise ConfigurationError(f"{key}: spec.template.spec.containers must be a list of containers")
        if sum(1 for c in containers if not c.get("name")) > 1:
            raise ConfigurationError(f"{key}: at most one container may leave out its name (the connector's)")
    return base


# -- names ------------------------------------------------------------------------------------
def connector_secret_name(workload_name: str) -> str:
    return f"{workload_name}{CONNECTOR_SECRET_SUFFIX}"


def pull_secret_name(registry: RegistrySettings, *, manager_id: str) -> str:
    """Valid RFC 1123 whatever the server looks like (ports, schemes, paths), stable per manager."""
    seed = "\0".join((manager_id, _auth_server(registry), registry.username or ""))
    return f"xtm-composer-registry-{hashlib.sha256(seed.encode('utf-8')).hexdigest()[:12]}"


# -- secrets ----------------------------------------------------------------------------------
def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _auth_server(registry: RegistrySettings) -> str:
    server = (registry.server or "").strip()
    for scheme in ("https://", "http://"):
        if server.startswith(scheme):
            server = server[len(scheme) :]
    server = server.strip("/")
    return server if server and server not in ("docker.io", "index.docker.io") else DOCKER_HUB_AUTH_SERVER


def has_registry_credentials(registry: RegistrySettings | None) -> bool:
    return registry is not None and bool(registry.username)


def docker_config_json(registry: RegistrySettings) -> str:
    """`.dockerconfigjson`: `auth` is base64("user:password") once; the whole text is encoded once more
    only as the Secret's `data` value."""
    username, password = registry.username or "", registry.password or ""
    entry: dict[str, str] = {"username": username, "password": password, "auth": _b64(f"{username}:{password}")}
    if registry.email:
        entry["email"] = registry.email
    return json.dumps({"auths": {_auth_server(registry): entry}}, sort_keys=True)


def pull_secret_manifest(registry: RegistrySettings, *, manager_id: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/dockerconfigjson",
        "metadata": {
            "name": pull_secret_name(registry, manager_id=manager_id),
            "labels": {LABEL_MANAGER: manager_id, **MANAGED_BY},
        },
        "data": {".dockerconfigjson": _b64(docker_config_json(registry))},
    }


def _sensitive_env(spec: WorkloadSpec) -> list[tuple[str, str]]:
    return [(key, value) for key, value in spec.env if key in spec.sensitive_keys and key != HASH_KEY]


def _file_items(spec: WorkloadSpec) -> list[tuple[str, str]]:
    """(secret key, file name inside the volume) per mounted file."""
    items = []
    for index, mounted in enumerate(spec.files):
        suffix = mounted.path.rsplit("/", 1)[-1]
        items.append((f"{FILE_KEY_PREFIX}{index}", f"file-{index}-{suffix}"))
    return items


def connector_secret_manifest(spec: WorkloadSpec) -> dict[str, Any] | None:
    """The connector's own Secret (sensitive env values, mounted files), or None when it needs none."""
    data = {key: _b64(value) for key, value in _sensitive_env(spec)}
    for (key, _), mounted in zip(_file_items(spec), spec.files, strict=True):
        data[key] = _b64(mounted.content)
    if not data:
        return None
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {"name": connector_secret_name(spec.name), "labels": {**spec.labels, **MANAGED_BY}},
        "data": data,
    }


def secret_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """Merge patch turning `current` into `desired`: keys gone from `desired` are deleted (null)."""
    old_keys = set((current.get("data") or {}).keys())
    data: dict[str, Any] = {key: None for key in old_keys - set(desired.get("data") or {})}
    data.update(desired.get("data") or {})
    return {"metadata": {"labels": dict(_dig(desired, "metadata", "labels") or {})}, "data": data}


def secret_values(spec: WorkloadSpec, registry: RegistrySettings | None) -> tuple[str, ...]:
    """Every value that must never reach a log line or an error message, with its encoded forms."""
    values = [value for _, value in _sensitive_env(spec)]
    if registry is not None and registry.password:
        values.append(registry.password)
        values.append(f"{registry.username or ''}:{registry.password}")
    encoded = [_b64(v) for v in values]
    return tuple(v for v in (*values, *encoded) if v)


# -- the Deployment ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ContainerOptions:
    image: str
    pull_policy: str = DEFAULT_PULL_POLICY
    resources: Mapping[str, Any] | None = None
    pull_secret: str | None = None


def _env(spec: WorkloadSpec, secret_name: str) -> list[dict[str, Any]]:
    sensitive = {key for key, _ in _sensitive_env(spec)}
    env: list[dict[str, Any]] = []
    for key, value in spec.env:
        if key in sensitive:
            env.append({"name": key, "valueFrom": {"secretKeyRef": {"name": secret_name, "key": key}}})
        else:
            env.append({"name": key, "value": value})
    return env


def ours(spec: WorkloadSpec, options: ContainerOptions, *, replicas: int) -> dict[str, Any]:
    """Our part of the Deployment, before the base is merged under it."""
    secret_name = connector_secret_name(spec.name)
    container: dict[str, Any] = {
        "name": spec.name,
        "image": options.image,
        "imagePullPolicy": options.pull_policy,
        "env": _env(spec, secret_name),
    }
    if options.resources:
        container["resources"] = copy.deepcopy(dict(options.resources))
    pod_spec: dict[str, Any] = {"containers": [container]}
    items = _file_items(spec)
    if items:
        container["volumeMounts"] = [
            {"name": FILES_VOLUME, "mountPath": mounted.path, "subPath": path, "readOnly": True}
            for (_, path), mounted in zip(items, spec.files, strict=True)
        ]
        pod_spec["volumes"] = [
            {
                "name": FILES_VOLUME,
                "secret": {
                    "secretName": secret_name,
                    "items": [{"key": key, "path": path} for key, path in items],
                    "defaultMode": 0o444,
                },
            }
        ]
    if options.pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": options.pull_secret}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": spec.name, "labels": dict(spec.labels), "annotations": {HASH_KEY: spec.config_hash}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(spec.labels)},
            "template": {"metadata": {"labels": dict(spec.labels)}, "spec": pod_spec},
        },
    }


def deployment_manifest(
    spec: WorkloadSpec, options: ContainerOptions, *, replicas: int, base: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The full Deployment: our defaults, then the operator's base, then ours on top."""
    adopted = _adopt_nameless_container(base or {}, spec.name)
    # A default the base sets at all is the base's (a base `strategy` must not get our `type`).
    base_spec = adopted.get("spec") if isinstance(adopted.get("spec"), Mapping) else {}
    defaults = {"spec": {k: v for k, v in DEPLOYMENT_DEFAULTS["spec"].items() if k not in base_spec}}
    below = merge_under(defaults, adopted)
    # The base's selector was dropped by `base_deployment`: ours is the selector, exactly.
    return merge_under(below, ours(spec, options, replicas=replicas))


def update_patch(manifest: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The merge patch turning `current` into `manifest`, without the (immutable) selector.

    A merge patch merges maps, so what `manifest` no longer has must be deleted explicitly: pod
    spec fields the base no longer sets (a nodeSelector dropped from the base), and the rolling
    update parameters of a Deployment moving to the Recreate strategy.
    """
    body = copy.deepcopy(dict(manifest))
    body["spec"].pop("selector", None)
    strategy = body["spec"].get("strategy")
    if isinstance(strategy, dict) and strategy.get("type") == "Recreate":
        strategy.setdefault("rollingUpdate", None)
    pod_spec = _dig(body, "spec", "template", "spec")
    current_pod_spec = _dig(current, "spec", "template", "spec") if current else None
    if isinstance(pod_spec, dict) and isinstance(current_pod_spec, Mapping):
        for key in current_pod_spec:
            # Fields the server defaults (dnsPolicy, schedulerName…) come back with their default.
            if key not in pod_spec:
                pod_spec[key] = None
    return body


def _adopt_nameless_container(base: Mapping[str, Any], name: str) -> dict[str, Any]:
    """A base container without a name holds defaults for the connector container (resources,
    securityContext, probes…): it takes the connector's name so the merge applies it there."""
    result = copy.deepcopy(dict(base))
    containers = _dig(result, "spec", "template", "spec", "containers")
    if isinstance(containers, list):
        for container in containers:
            if isinstance(container, dict) and not container.get("name"):
                container["name"] = name
                break
    return result


def merge_under(base: Any, top: Any) -> Any:
    """Deep merge, `top` winning; keyed lists (containers, env, volumes…) merged item by item with
    `top`'s items first, then the base's others (sidecars); other lists and scalars replaced."""
    if not (isinstance(base, Mapping) and isinstance(top, Mapping)):
        return copy.deepcopy(top)
    merged = {key: copy.deepcopy(value) for key, value in base.items()}
    for key, value in top.items():
        if key not in merged:
            merged[key] = copy.deepcopy(value)
            continue
        list_key = _LIST_MERGE_KEYS.get(key)
        if list_key and isinstance(merged[key], list) and isinstance(value, list):
            merged[key] = _merge_keyed(merged[key], value, list_key)
        else:
            merged[key] = merge_under(merged[key], value)
    return merged


def _merge_keyed(base: list[Any], top: list[Any], key: str) -> list[Any]:
    base_by_key = {item[key]: item for item in base if isinstance(item, Mapping) and key in item}
    top_keys = {item.get(key) for item in top if isinstance(item, Mapping)}
    result = [
        merge_under(base_by_key[item[key]], item)
        if isinstance(item, Mapping) and item.get(key) in base_by_key
        else copy.deepcopy(item)
        for item in top
    ]
    result.extend(copy.deepcopy(item) for item in base if not (isinstance(item, Mapping) and item.get(key) in top_keys))
    return result


def _dig(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


def owned_by(labels: Mapping[str, str] | None, spec_labels: Mapping[str, str]) -> bool:
    """Whether an object carrying `labels` is this connector's, for this manager and platform
    (no platform label: made by an older composer, adopted)."""
    labels = labels or {}
    return (
        labels.get(LABEL_MANAGER) == spec_labels.get(LABEL_MANAGER)
        and labels.get(LABEL_CONNECTOR_ID) == spec_labels.get(LABEL_CONNECTOR_ID)
        and labels.get(LABEL_PLATFORM) in (None, spec_labels.get(LABEL_PLATFORM))
    )
