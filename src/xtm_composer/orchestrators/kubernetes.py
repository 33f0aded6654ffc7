"""Kubernetes orchestrator (official `kubernetes` client): one Deployment per connector.

Each connector is a Deployment named like its workload, with the three ownership labels on the
Deployment and its pod template, those labels as selector, and the config hash as the Deployment
annotation `OPENCTI_CONFIG_HASH` (the Rust composer's layout, so its Deployments are adopted).
Start and stop scale it to 1 or 0. Sensitive values live in a per-connector Secret referenced by
`secretKeyRef`; registry credentials in one `kubernetes.io/dockerconfigjson` Secret.

Observation is bulk: one Deployment list and one Pod list per pass, both on our manager label;
the state of a connector is read from its pods, and `health`/`logs` reuse that pod view while it
is fresh. Updates are merge patches without the immutable selector; only the API server's
"selector does not match / is immutable" answer leads to delete-and-recreate.

The client is blocking: every call runs in a worker thread. Requests go through the client's
`ApiClient` (configuration, auth, TLS, token refresh) with plain JSON bodies: the generated typed
methods validate bodies against strict models that reject valid manifests (integer quantities in
a base Deployment, fields newer than the client). ApiExceptions become our errors in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from xtm_composer.config.settings import KubernetesSettings, RegistrySettings
from xtm_composer.domain import HASH_KEY, LABEL_MANAGER, Health, Workload, WorkloadSpec, WorkloadState
from xtm_composer.errors import (
    ConfigurationError,
    InvalidWorkloadSpec,
    OrchestratorError,
    OrchestratorForbidden,
    OrchestratorUnavailable,
    WorkloadConflict,
    WorkloadNotFound,
)
from xtm_composer.observability import get_logger
from xtm_composer.orchestrators import k8s_observe as observe
from xtm_composer.orchestrators import k8s_specs as specs
from xtm_composer.orchestrators.docker_options import image_reference

log = get_logger(__name__)
T = TypeVar("T")

SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
# How long the pod view of the last listing serves `health` and `logs` without a new call.
VIEW_MAX_AGE_SECONDS = 15.0

# Every (API group, resource) → verbs this module uses. deploy/kubernetes/rbac.yaml grants exactly
# these; a test holds the Role, this table and the calls actually made to the same set.
RBAC_RULES: dict[tuple[str, str], frozenset[str]] = {
    ("apps", "deployments"): frozenset({"list", "get", "create", "patch", "delete"}),
    ("", "pods"): frozenset({"list"}),
    ("", "pods/log"): frozenset({"get"}),
    ("", "secrets"): frozenset({"get", "create", "patch", "delete"}),
}

_MERGE_PATCH = "application/merge-patch+json"


class KubeApi:
    """The few API calls the orchestrator makes, as JSON in and out, over the client's ApiClient.

    Blocking; raises `ApiException` (and urllib3/OS errors) untranslated.
    """

    def __init__(
        self, api_client: k8s_client.ApiClient, *, namespace: str, timeout: float, on_request: Callable[[], None]
    ) -> None:
        self.client = api_client
        self.namespace = namespace
        self._timeout = timeout
        self._on_request = on_request

    def _path(self, group: str, resource: str, name: str | None, sub: str | None) -> str:
        prefix = "/api/v1" if group == "" else f"/apis/{group}/v1"
        path = f"{prefix}/namespaces/{self.namespace}/{resource}"
        if name is not None:
            path += f"/{name}"
        if sub is not None:
            path += f"/{sub}"
        return path

    def request(
        self,
        verb: str,
        group: str,
        resource: str,
        *,
        name: str | None = None,
        sub: str | None = None,
        query: list[tuple[str, Any]] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        text: bool = False,
    ) -> Any:
        rule = f"{resource}/{sub}" if sub else resource
        if verb not in RBAC_RULES.get((group, rule), frozenset()):
            raise AssertionError(f"{verb} {rule} is not in RBAC_RULES (deploy/kubernetes/rbac.yaml)")
        method = {"list": "GET", "get": "GET", "create": "POST", "patch": "PATCH", "delete": "DELETE"}[verb]
        headers = {"Accept": "text/plain" if text else "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        params = self.client.param_serialize(
            method=method,
            resource_path=self._path(group, resource, name, sub),
            query_params=query or [],
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        self._on_request()
        response = self.client.call_api(*params, _request_timeout=self._timeout)
        data = response.read()
        if not 200 <= response.status <= 299:
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        if text:
            return (data or b"").decode("utf-8", errors="replace")
        return json.loads(data) if data else {}

    # deployments
    def list_deployments(self, selector: str) -> list[dict[str, Any]]:
        return self.request("list", "apps", "deployments", query=[("labelSelector", selector)]).get("items") or []

    def get_deployment(self, name: str) -> dict[str, Any]:
        return self.request("get", "apps", "deployments", name=name)

    def create_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("create", "apps", "deployments", body=body)

    def patch_deployment(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("patch", "apps", "deployments", name=name, body=body, content_type=_MERGE_PATCH)

    def delete_deployment(self, name: str, *, uid: str | None = None) -> None:
        options: dict[str, Any] = {"propagationPolicy": "Background"}
        if uid:
            options["preconditions"] = {"uid": uid}  # never delete a newer namesake
        self.request("delete", "apps", "deployments", name=name, body=options)

    # pods
    def list_pods(self, selector: str) -> list[dict[str, Any]]:
        return self.request("list", "", "pods", query=[("labelSelector", selector)]).get("items") or []

    def pod_log(self, pod: str, *, container: str, tail: int, previous: bool) -> str:
        query: list[tuple[str, Any]] = [("container", container), ("tailLines", tail)]
        if previous:
            query.append(("previous", "true"))
        return self.request("get", "", "pods", name=pod, sub="log", query=query, text=True)

    # secrets
    def get_secret(self, name: str) -> dict[str, Any]:
        return self.request("get", "", "secrets", name=name)

    def create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("create", "", "secrets", body=body)

    def patch_secret(self, name: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.request("patch", "", "secrets", name=name, body=body, content_type=_MERGE_PATCH)

    def delete_secret(self, name: str, *, uid: str | None = None) -> None:
        options: dict[str, Any] = {"preconditions": {"uid": uid}} if uid else {}
        self.request("delete", "", "secrets", name=name, body=options)


@dataclass(frozen=True, slots=True)
class _View:
    """One Deployment and its pods as last seen (pods None: changed since, to be read again)."""

    deployment: dict[str, Any] | None
    pods: list[dict[str, Any]] | None
    at: float


class KubernetesOrchestrator:
    """Runs connectors as Deployments in one namespace."""

    def __init__(
        self,
        settings: KubernetesSettings | None = None,
        registry: RegistrySettings | None = None,
        *,
        api_client: k8s_client.ApiClient | None = None,
        namespace: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings or KubernetesSettings()
        self._registry = registry if specs.has_registry_credentials(registry) else None
        self._image_registry = registry
        policy, valid = specs.pull_policy(self._settings.image_pull_policy)
        if not valid:
            log.warning(
                "daemon.kubernetes.image_pull_policy is not Always, IfNotPresent or Never: using the default",
                given=self._settings.image_pull_policy,
                used=policy,
            )
        self._pull_policy = policy
        self._resources = specs.image_resources(self._settings.image_resources)
        self._base = specs.base_deployment(self._settings)
        context_namespace = None
        self._owns_client = api_client is None
        if api_client is None:
            api_client, context_namespace = _client_from_settings(self._settings)
        self.namespace = namespace or self._settings.namespace or context_namespace or _pod_namespace() or "default"
        self._counter = itertools.count(1)
        self.api_calls = 0  # requests sent to the API server (for benchmarks and tests)
        self._api = KubeApi(
            api_client, namespace=self.namespace, timeout=self._settings.request_timeout, on_request=self._count
        )
        self._clock = clock
        self._views: dict[str, _View] = {}
        self._selectors: dict[str, dict[str, str]] = {}
        self._pull_secret_applied: str | None = None  # digest of the pull Secret already sent

    def _count(self) -> None:
        self.api_calls = next(self._counter)

    async def close(self) -> None:
        if self._owns_client:
            await asyncio.to_thread(self._api.client.close)

    # -- plumbing -------------------------------------------------------------------------
    async def _call(self, what: str, fn: Callable[[KubeApi], T], *, secrets: tuple[str, ...] = ()) -> T:
        try:
            return await asyncio.to_thread(fn, self._api)
        except OrchestratorError:
            raise
        except ApiException as exc:
            raise _translate(what, exc, secrets) from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise OrchestratorUnavailable(f"{what}: API server unreachable ({type(exc).__name__})") from None

    def _fresh_view(self, name: str) -> _View | None:
        view = self._views.get(name)
        if view is None or self._clock() - view.at > VIEW_MAX_AGE_SECONDS:
            return None
        return view

    def _changed(self, name: str, deployment: dict[str, Any]) -> None:
        """After an action: keep the Deployment the API server returned, read the pods again."""
        self._views[name] = _View(deployment, None, self._clock())
        self._selectors[name] = observe.match_labels(deployment)

    # -- observation ----------------------------------------------------------------------
    async def list_workloads(self, *, manager_id: str) -> list[Workload]:
        selector = f"{LABEL_MANAGER}={manager_id}"
        deployments, pods = await asyncio.gather(
            self._call("list deployments", lambda api: api.list_deployments(selector)),
            self._call("list pods", lambda api: api.list_pods(selector)),
        )
        now = self._clock()
        views: dict[str, _View] = {}
        workloads = []
        for deployment in deployments:
            metadata = deployment.get("metadata") or {}
            name = str(metadata.get("name"))
            selector_labels = observe.match_labels(deployment)
            own_pods = observe.pods_of(name, selector_labels, pods)
            views[name] = _View(deployment, own_pods, now)
            self._selectors[name] = selector_labels
            reading = observe.read_pods(own_pods, container=name, replicas=_replicas(deployment))
            workloads.append(
                Workload(
                    name=name,
                    state=reading.state,
                    labels=dict(metadata.get("labels") or {}),
                    config_hash=(metadata.get("annotations") or {}).get(HASH_KEY),
                    engine_id=metadata.get("uid"),
                    detail=reading.detail,
                )
            )
        self._views = views
        for gone in set(self._selectors) - set(views):
            del self._selectors[gone]
        return workloads

    async def _observe(self, workload: Workload) -> observe.PodReading:
        """The connector's pod reading: from the last listing while fresh, else one Pod list call
        (plus a Deployment read when neither a listing nor an action told us its selector)."""
        name = workload.name
        view = self._fresh_view(name)
        if view is None or view.pods is None:
            deployment = view.deployment if view is not None else None
            known = self._selectors.get(name)

            def fetch(api: KubeApi) -> _View:
                current, selector = deployment, known
                if not selector:
                    current = api.get_deployment(name)
                    selector = observe.match_labels(current)
                if not selector:
                    raise WorkloadNotFound(f"deployment {name} has no label selector")
                pods = api.list_pods(",".join(f"{k}={v}" for k, v in sorted(selector.items())))
                return _View(current, observe.pods_of(name, selector, pods), self._clock())

            view = await self._call(f"pods of {name}", fetch)
            self._views[name] = view
            if view.deployment is not None:
                self._selectors[name] = observe.match_labels(view.deployment)
        # Deployment not seen (pods listed by selector only): pods present mean it is meant to run.
        replicas = _replicas(view.deployment) if view.deployment is not None else 1
        return observe.read_pods(view.pods or [], container=name, replicas=replicas)

    async def health(self, workload: Workload) -> Health:
        reading = await self._observe(workload)
        return observe.health_of(reading, now=datetime.now(UTC))

    async def logs(self, workload: Workload, *, tail: int) -> list[str]:
        """The connector container's last `tail` lines, preceded by its crashed predecessor's last
        `tail` lines when it restarted; a note says why it is not running, when it is not."""
        reading = await self._observe(workload)
        plan = observe.log_plan(reading)
        pod, container = reading.pod_name, workload.name

        def read(api: KubeApi) -> list[str]:
            lines: list[str] = []
            for previous, wanted in ((True, plan.previous), (False, plan.current)):
                if not (wanted and pod):
                    continue
                try:
                    text = api.pod_log(pod, container=container, tail=tail, previous=previous)
                except ApiException as exc:
                    if exc.status in (400, 404):  # no such instance (any more): nothing to read
                        continue
                    raise
                lines.extend(line for line in text.splitlines() if line.strip())
            return lines

        lines = await self._call(f"logs of {workload.name}", read) if plan.previous or plan.current else []
        return [*lines, plan.note] if plan.note else lines

    # -- actions --------------------------------------------------------------------------
    async def prepare(self, spec: WorkloadSpec) -> None:
        """Nothing to check ahead: nodes pull images themselves (a bad image shows as ImagePullBackOff)."""

    async def deploy(self, spec: WorkloadSpec, *, start: bool) -> Workload:
        image = str(image_reference(spec.image, self._image_registry))
        manager_id = spec.labels.get(LABEL_MANAGER, "")
        pull_secret = (
            specs.pull_secret_manifest(self._registry, manager_id=manager_id) if self._registry is not None else None
        )
        options = specs.ContainerOptions(
            image=image,
            pull_policy=self._pull_policy,
            resources=self._resources,
            pull_secret=pull_secret["metadata"]["name"] if pull_secret else None,
        )
        manifest = specs.deployment_manifest(spec, options, replicas=1 if start else 0, base=self._base)
        secret = specs.connector_secret_manifest(spec)
        view = self._fresh_view(spec.name)
        known = view.deployment if view is not None and view.deployment is not None else None
        if known is not None and not specs.owned_by((known.get("metadata") or {}).get("labels"), spec.labels):
            known = None  # let the API server answer for it

        def apply(api: KubeApi) -> dict[str, Any]:
            if pull_secret is not None:
                self._ensure_pull_secret(api, pull_secret)
            created_secret = secret is not None and self._put_connector_secret(api, spec, secret)
            try:
                deployment, updated = self._put_deployment(api, spec, manifest, known)
            except Exception:
                # No Deployment, no Secret: nothing would ever list (and so remove) it.
                if created_secret:
                    with contextlib.suppress(ApiException, urllib3.exceptions.HTTPError, OSError):
                        api.delete_secret(specs.connector_secret_name(spec.name))
                raise
            if secret is None and updated:
                self._drop_connector_secret(api, spec.name, spec.labels)  # no sensitive value any more
            return deployment

        deployment = await self._call(f"deploy {spec.name}", apply, secrets=specs.secret_values(spec, self._registry))
        self._changed(spec.name, deployment)
        metadata = deployment.get("metadata") or {}
        return Workload(
            name=spec.name,
            state=WorkloadState.PENDING if start else WorkloadState.EXITED,
            labels=dict(metadata.get("labels") or spec.labels),
            config_hash=spec.config_hash,
            engine_id=metadata.get("uid"),
        )

    def _ensure_pull_secret(self, api: KubeApi, manifest: dict[str, Any]) -> None:
        """Create or refresh the registry Secret, once per content for this process."""
        digest = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode("utf-8")).hexdigest()
        if self._pull_secret_applied == digest:
            return
        try:
            api.create_secret(manifest)
        except ApiException as exc:
            if exc.status != 409:
                raise
            # Its name derives from our manager id and the registry: it can only be ours.
            api.patch_secret(manifest["metadata"]["name"], {"metadata": manifest["metadata"], "data": manifest["data"]})
        self._pull_secret_applied = digest

    def _put_connector_secret(self, api: KubeApi, spec: WorkloadSpec, secret: dict[str, Any]) -> bool:
        """Create or update the connector's Secret; True when this call created it."""
        name = specs.connector_secret_name(spec.name)
        try:
            api.create_secret(secret)
            return True
        except ApiException as exc:
            if exc.status != 409:
                raise
        current = api.get_secret(name)
        if not specs.owned_by((current.get("metadata") or {}).get("labels"), spec.labels):
            raise WorkloadConflict(f"secret {name} exists and is not this connector's")
        api.patch_secret(name, specs.secret_patch(current, secret))
        return False

    @staticmethod
    def _drop_connector_secret(api: KubeApi, name: str, owner_labels: Mapping[str, str]) -> None:
        """Delete the connector's Secret if there is one and it carries the owner's labels."""
        secret_name = specs.connector_secret_name(name)
        try:
            current = api.get_secret(secret_name)
        except ApiException as exc:
            if exc.status == 404:
                return
            raise
        metadata = current.get("metadata") or {}
        if specs.owned_by(metadata.get("labels"), owner_labels):
            _ignore_missing(lambda: api.delete_secret(secret_name, uid=metadata.get("uid")))

    def _put_deployment(
        self, api: KubeApi, spec: WorkloadSpec, manifest: dict[str, Any], known: dict[str, Any] | None
    ) -> tuple[dict[str, Any], bool]:
        """Create the Deployment, or update ours of that name: (Deployment, whether it existed)."""
        current = known
        if current is None:
            try:
                return api.create_deployment(manifest), False
            except ApiException as exc:
                if exc.status != 409:
                    raise
            current = api.get_deployment(spec.name)
        metadata = current.get("metadata") or {}
        if not specs.owned_by(metadata.get("labels"), spec.labels):
            raise WorkloadConflict(f"deployment {spec.name} exists without this connector's labels")
        if metadata.get("deletionTimestamp"):
            raise OrchestratorUnavailable(f"deployment {spec.name} is still being deleted; deployed next pass")
        try:
            return api.patch_deployment(spec.name, specs.update_patch(manifest, current)), True
        except ApiException as exc:
            if exc.status == 404:
                return api.create_deployment(manifest), False
            status = observe.parse_status(exc.status or 0, exc.body)
            if not observe.is_selector_mismatch(status):
                raise
        log.warning(
            "deployment selector cannot be updated: deleting and recreating it",
            workload=spec.name,
            reason=status.message[:200],
        )
        _ignore_missing(lambda: api.delete_deployment(spec.name, uid=metadata.get("uid")))
        return api.create_deployment(manifest), True

    async def _scale(self, workload: Workload, replicas: int) -> None:
        view = self._fresh_view(workload.name)
        if view is not None and view.deployment is not None and _replicas(view.deployment) == replicas:
            return  # already asked for: its pods are coming (or failing, which no patch fixes)
        verb = "start" if replicas else "stop"
        deployment = await self._call(
            f"{verb} {workload.name}",
            lambda api: api.patch_deployment(workload.name, {"spec": {"replicas": replicas}}),
        )
        self._changed(workload.name, deployment)

    async def start(self, workload: Workload) -> None:
        await self._scale(workload, 1)

    async def stop(self, workload: Workload) -> None:
        await self._scale(workload, 0)

    async def remove(self, workload: Workload) -> None:
        """Delete the Deployment (the one observed, by uid) and the connector's Secret."""
        name = workload.name

        def delete(api: KubeApi) -> None:
            try:
                api.delete_deployment(name, uid=workload.engine_id)
            except ApiException as exc:
                if exc.status == 409:
                    return  # the name holds a newer Deployment now: it and its Secret stay
                if exc.status != 404:
                    raise
            if workload.manager_id and workload.connector_id:
                self._drop_connector_secret(api, name, workload.labels)

        await self._call(f"remove {name}", delete)
        self._views.pop(name, None)
        self._selectors.pop(name, None)


def _replicas(deployment: Mapping[str, Any]) -> int:
    replicas = (deployment.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)  # the API server's default is 1


def _ignore_missing(fn: Callable[[], Any]) -> None:
    try:
        fn()
    except ApiException as exc:
        if exc.status not in (404, 409):
            raise


def _translate(what: str, exc: ApiException, secrets: tuple[str, ...]) -> OrchestratorError:
    code = int(exc.status or 0)
    status = observe.parse_status(code, exc.body)

    def text(message: str) -> str:
        return observe.mask(f"{what}: {message}", secrets)

    if code == 401:
        return OrchestratorForbidden(
            text("the API server rejected the composer's credentials (401): check its service account or kubeconfig")
        )
    if code == 403:
        return OrchestratorForbidden(text(observe.forbidden_explanation(status)))
    if code == 404:
        return WorkloadNotFound(text(status.message or "not found"))
    if code == 409:
        return WorkloadConflict(text(status.message or "conflict"))
    if code in (400, 422):
        return InvalidWorkloadSpec(text(observe.invalid_explanation(status)))
    if code == 0 or code == 429 or code >= 500:
        detail = status.message or exc.reason or "no answer"
        return OrchestratorUnavailable(text(f"API server unavailable ({code or 'no response'}): {detail}"))
    return OrchestratorError(text(f"API server answered {code}: {status.message or exc.reason}"))


def _pod_namespace() -> str | None:
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _client_from_settings(settings: KubernetesSettings) -> tuple[k8s_client.ApiClient, str | None]:
    """In-cluster service account when running in a pod (and no kubeconfig is named), else the
    kubeconfig (`kubeconfig`, $KUBECONFIG, ~/.kube/config) and its context. No network here."""
    configuration = k8s_client.Configuration()
    try:
        if settings.kubeconfig is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            k8s_config.load_incluster_config(client_configuration=configuration)
            return _api_client(configuration), None
        k8s_config.load_kube_config(
            config_file=settings.kubeconfig,
            context=settings.context,
            client_configuration=configuration,
            persist_config=False,
        )
        contexts, active = k8s_config.list_kube_config_contexts(config_file=settings.kubeconfig)
    except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"daemon.kubernetes: cannot load the Kubernetes client configuration: {exc}") from None
    chosen = next((c for c in contexts if c.get("name") == settings.context), None) if settings.context else active
    namespace = ((chosen or {}).get("context") or {}).get("namespace")
    return _api_client(configuration), namespace


def _api_client(configuration: k8s_client.Configuration) -> k8s_client.ApiClient:
    api_client = k8s_client.ApiClient(configuration)
    api_client.user_agent = "xtm-composer"
    return api_client
