"""A small Kubernetes API server on 127.0.0.1 for testing through the real `kubernetes` client.

It keeps Deployments, Pods, Secrets and pod logs in memory and answers like the real server where
the composer can tell the difference: label selectors, merge patches (strategic merge treated as
merge), `Status` objects for 403/404/409/422, the immutable Deployment selector, delete
preconditions, server-side defaults, and the kubelet's rules for which logs exist.

A Deployment scaled to 1 gets a Running pod (owned through a ReplicaSet name and a
`pod-template-hash` label, as for real); scaled to 0 or deleted, its pods go; a new template
replaces them. `set_pod_state` puts a pod in the states the composer must read: running with
`startedAt`, waiting in CrashLoopBackOff (restartCount, lastState.terminated), ImagePullBackOff,
or no pod at all. Every request is recorded as (verb, group, resource), the RBAC view of it.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import itertools
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import kubernetes.client

_CORE = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<res>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")
_GROUP = re.compile(
    r"^/apis/(?P<group>[^/]+)/v1/namespaces/(?P<ns>[^/]+)/(?P<res>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_KINDS = {("apps", "deployments"): "Deployment", ("", "pods"): "Pod", ("", "secrets"): "Secret"}
SERVICE_ACCOUNT = "system:serviceaccount:xtm:xtm-composer"


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def status_body(code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }
    if details is not None:
        body["details"] = details
    return body


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.body = status_body(code, reason, message, details)
        self.code = code


def _invalid(kind: str, group: str, name: str, causes: list[tuple[str, str]]) -> ApiError:
    qualified = f"{kind}.{group}" if group else kind
    text = ", ".join(f"{f}: {m}" for f, m in causes)
    details = {
        "name": name,
        "group": group,
        "kind": kind,
        "causes": [{"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in causes],
    }
    return ApiError(422, "Invalid", f'{qualified} "{name}" is invalid: {text}', details)


def parse_selector(raw: str | None) -> list[tuple[str, str, str | None]]:
    requirements: list[tuple[str, str, str | None]] = []
    for part in (raw or "").split(","):
        part = part.strip()
        if not part:
            continue
        if "!=" in part:
            key, value = part.split("!=", 1)
            requirements.append(("!=", key.strip(), value.strip()))
        elif "==" in part or "=" in part:
            key, value = re.split("==?", part, maxsplit=1)
            requirements.append(("=", key.strip(), value.strip()))
        elif part.startswith("!"):
            requirements.append(("!", part[1:].strip(), None))
        else:
            requirements.append(("exists", part, None))
    return requirements


def selector_matches(requirements: list[tuple[str, str, str | None]], labels: dict[str, str]) -> bool:
    for op, key, value in requirements:
        if op == "=" and labels.get(key) != value:
            return False
        if op == "!=" and labels.get(key) == value:
            return False
        if op == "!" and key in labels:
            return False
        if op == "exists" and key not in labels:
            return False
    return True


@dataclass
class Recorded:
    method: str
    verb: str
    group: str
    resource: str  # with the subresource: "pods/log"
    name: str | None
    query: dict[str, str]
    content_type: str | None
    body: Any


@dataclass
class Fault:
    verb: str | None
    resource: str | None
    code: int
    reason: str
    message: str
    causes: list[tuple[str, str]] = field(default_factory=list)
    name: str | None = None
    times: int | None = 1  # None: until cleared


class FakeApiServer:
    def __init__(self, namespace: str = "xtm") -> None:
        self.namespace = namespace
        self.deployments: dict[str, dict[str, Any]] = {}
        self.pods: dict[str, dict[str, Any]] = {}
        self.secrets: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, dict[str, list[str]]] = {}  # deployment → {"current": […], "previous": […]}
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self.held: set[str] = set()  # deployments whose pods are not created ("no pod yet")
        self.delay = 0.0  # seconds before answering any request (timeouts)
        self._lock = threading.RLock()
        self._versions = itertools.count(1000)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> FakeApiServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                code, content_type, payload = fake.handle(
                    self.command, self.path, self.headers.get("Content-Type"), raw
                )
                self.send_response(code)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _serve

            def log_message(self, *_args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-apiserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def host(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def api_client(self) -> kubernetes.client.ApiClient:
        return kubernetes.client.ApiClient(kubernetes.client.Configuration(host=self.host))

    # -- test controls --------------------------------------------------------------------------
    def fail(
        self,
        verb: str | None,
        resource: str | None,
        *,
        code: int,
        message: str = "",
        reason: str | None = None,
        causes: list[tuple[str, str]] | None = None,
        name: str | None = None,
        times: int | None = 1,
    ) -> None:
        """Answer the next matching request(s) with a `Status` of `code` instead of serving it."""
        default_reason = {403: "Forbidden", 404: "NotFound", 409: "AlreadyExists", 422: "Invalid"}.get(
            code, "InternalError"
        )
        with self._lock:
            self.faults.append(
                Fault(verb, resource, code, reason or default_reason, message, list(causes or []), name, times)
            )

    def forbid(self, verb: str, resource: str, *, group: str = "") -> None:
        """RBAC denies `verb` on `resource` until `allow()`, with the real server's message."""
        message = (
            f'{resource}{"." + group if group else ""} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} '
            f'resource "{resource}" in API group "{group}" in the namespace "{self.namespace}"'
        )
        self.fail(verb, resource, code=403, message=message, times=None)

    def allow(self) -> None:
        with self._lock:
            self.faults.clear()

    def reset_requests(self) -> None:
        with self._lock:
            self.requests.clear()

    def verbs(self) -> set[tuple[str, str, str]]:
        with self._lock:
            return {(r.group, r.resource, r.verb) for r in self.requests}

    def deployment(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self.deployments.get(name))

    def secret(self, name: str) -> dict[str, Any] | None:
        with self._lock:
            return copy.deepcopy(self.secrets.get(name))

    def pods_of(self, deployment: str) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(p) for p in self.pods.values() if self._owner(p) == deployment]

    def put_deployment(self, manifest: dict[str, Any]) -> dict[str, Any]:
        """Create a Deployment directly (another tool's, or an older composer's)."""
        with self._lock:
            return self._create_deployment(copy.deepcopy(manifest))

    def set_logs(self, deployment: str, *, current: list[str] = (), previous: list[str] = ()) -> None:  # type: ignore[assignment]
        with self._lock:
            self.logs[deployment] = {"current": list(current), "previous": list(previous)}

    def set_pod_state(
        self,
        deployment: str,
        state: str,
        *,
        restart_count: int = 0,
        started_at: datetime | None = None,
        message: str | None = None,
        crashed_before: bool = False,
    ) -> None:
        """`running` (startedAt; `crashed_before`: with a lastState.terminated), `crashloop` (waiting
        CrashLoopBackOff, restartCount, lastState.terminated started at `started_at`),
        `image_pull_backoff`, `err_image_pull`, or `none` (no pod until set to another state)."""
        now = datetime.now(UTC)
        started = started_at or now
        with self._lock:
            if state == "none":
                self.held.add(deployment)
                for name in [n for n, p in self.pods.items() if self._owner(p) == deployment]:
                    del self.pods[name]
                return
            self.held.discard(deployment)
            self._reconcile_pods(deployment)
            pods = [p for p in self.pods.values() if self._owner(p) == deployment]
            assert pods, f"{deployment} has no pod (scaled to 0?)"
            for pod in pods:
                status = self._our_container_status(pod, deployment)
                status["restartCount"] = restart_count
                status.pop("lastState", None)
                if state == "running":
                    status["state"] = {"running": {"startedAt": rfc3339(started)}}
                    status["ready"], pod["status"]["phase"] = True, "Running"
                    if crashed_before:
                        status["lastState"] = self._crashed(started - timedelta(seconds=30))
                elif state == "crashloop":
                    back_off = (
                        f"back-off 5m0s restarting failed container={status['name']} pod={pod['metadata']['name']}"
                    )
                    status["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message or back_off}}
                    status["lastState"] = self._crashed(started)
                    status["ready"], pod["status"]["phase"] = False, "Running"
                elif state in ("image_pull_backoff", "err_image_pull"):
                    reason = "ImagePullBackOff" if state == "image_pull_backoff" else "ErrImagePull"
                    image = status.get("image")
                    status["state"] = {
                        "waiting": {"reason": reason, "message": message or f'Back-off pulling image "{image}"'}
                    }
                    status["ready"], pod["status"]["phase"] = False, "Pending"
                else:
                    raise ValueError(state)

    @staticmethod
    def _crashed(started: datetime) -> dict[str, Any]:
        finished = rfc3339(started + timedelta(seconds=2))
        return {"terminated": {"exitCode": 1, "reason": "Error", "startedAt": rfc3339(started), "finishedAt": finished}}

    # -- HTTP ---------------------------------------------------------------------------------
    def handle(self, method: str, raw_path: str, content_type: str | None, raw: bytes) -> tuple[int, str, bytes]:
        parts = urlsplit(raw_path)
        query = dict(parse_qsl(parts.query))
        match = _GROUP.match(parts.path) or _CORE.match(parts.path)
        if match is None:
            return self._json(404, status_body(404, "NotFound", "the server could not find the requested resource"))
        group = match.groupdict().get("group") or ""
        resource, name, sub = match["res"], match["name"], match["sub"]
        full_resource = f"{resource}/{sub}" if sub else resource
        verb = {
            "GET": "get" if name else "list",
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }[method]
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            return self._json(400, status_body(400, "BadRequest", "the body of the request was in an unknown format"))
        if self.delay:
            time.sleep(self.delay)
        with self._lock:
            self.requests.append(Recorded(method, verb, group, full_resource, name, query, content_type, body))
            fault = self._fault_for(verb, full_resource, name)
            if fault is not None:
                details = {"name": name or "", "group": group, "kind": resource}
                if fault.causes:
                    details["causes"] = [
                        {"reason": "FieldValueInvalid", "message": m, "field": f} for f, m in fault.causes
                    ]
                return self._json(fault.code, status_body(fault.code, fault.reason, fault.message, details))
            if match["ns"] != self.namespace:
                return self._json(
                    403,
                    status_body(
                        403,
                        "Forbidden",
                        f'{resource} is forbidden: User "{SERVICE_ACCOUNT}" cannot {verb} '
                        f'resource "{resource}" in API group "{group}" in the namespace "{match["ns"]}"',
                    ),
                )
            try:
                if full_resource == "pods/log":
                    return 200, "text/plain", self._pod_log(name, query).encode("utf-8")
                return self._json(200, self._dispatch(verb, group, resource, name, query, content_type, body))
            except ApiError as exc:
                return self._json(exc.code, exc.body)

    def _fault_for(self, verb: str, resource: str, name: str | None) -> Fault | None:
        for fault in self.faults:
            if fault.verb not in (None, verb) or fault.resource not in (None, resource):
                continue
            if fault.name not in (None, name):
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
            return fault
        return None

    @staticmethod
    def _json(code: int, body: Any) -> tuple[int, str, bytes]:
        return code, "application/json", json.dumps(body).encode("utf-8")

    def _dispatch(
        self,
        verb: str,
        group: str,
        resource: str,
        name: str | None,
        query: dict[str, str],
        ctype: str | None,
        body: Any,
    ) -> Any:
        store = {("apps", "deployments"): self.deployments, ("", "pods"): self.pods, ("", "secrets"): self.secrets}.get(
            (group, resource)
        )
        if store is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        kind = _KINDS[(group, resource)]
        if verb == "list":
            requirements = parse_selector(query.get("labelSelector"))
            items = [
                copy.deepcopy(obj)
                for obj in store.values()
                if selector_matches(requirements, (obj.get("metadata") or {}).get("labels") or {})
            ]
            version = "apps/v1" if group == "apps" else "v1"
            return {"kind": f"{kind}List", "apiVersion": version, "metadata": {"resourceVersion": "1"}, "items": items}
        qualified = f"{resource}.{group}" if group else resource
        if verb == "create":
            body = body or {}
            if resource == "deployments":
                return self._create_deployment(body)
            if resource == "secrets":
                return self._create_secret(body)
            raise ApiError(405, "MethodNotAllowed", "create is not supported here")
        assert name is not None
        current = store.get(name)
        if current is None:
            raise ApiError(
                404, "NotFound", f'{qualified} "{name}" not found', {"name": name, "group": group, "kind": resource}
            )
        if verb == "get":
            return copy.deepcopy(current)
        if verb == "patch":
            if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                raise ApiError(
                    415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {ctype}"
                )
            if resource == "deployments":
                return self._patch_deployment(name, current, body or {})
            if resource == "secrets":
                return self._patch_secret(name, current, body or {})
            raise ApiError(405, "MethodNotAllowed", "patch is not supported here")
        if verb == "delete":
            wanted = ((body or {}).get("preconditions") or {}).get("uid")
            uid = current["metadata"]["uid"]
            if wanted and wanted != uid:
                raise ApiError(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on {qualified} "{name}": Precondition failed: '
                    f"UID in precondition: {wanted}, UID in object meta: {uid}",
                )
            del store[name]
            if resource == "deployments":
                for pod in [n for n, p in self.pods.items() if self._owner(p) == name]:
                    del self.pods[pod]
            return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}
        raise ApiError(405, "MethodNotAllowed", f"{verb} is not supported here")

    # -- deployments ------------------------------------------------------------------------------
    def _stamp(self, obj: dict[str, Any], *, created: bool) -> None:
        metadata = obj.setdefault("metadata", {})
        metadata["namespace"] = self.namespace
        metadata["resourceVersion"] = str(next(self._versions))
        if created:
            metadata["uid"] = str(uuid.uuid4())
            metadata["creationTimestamp"] = rfc3339(datetime.now(UTC))

    @staticmethod
    def _defaults(deployment: dict[str, Any]) -> None:
        spec = deployment.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        strategy.setdefault("type", "RollingUpdate")
        if strategy["type"] == "RollingUpdate":
            strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
        pod_spec = spec.setdefault("template", {}).setdefault("spec", {})
        pod_spec.setdefault("restartPolicy", "Always")
        pod_spec.setdefault("dnsPolicy", "ClusterFirst")
        pod_spec.setdefault("schedulerName", "default-scheduler")
        pod_spec.setdefault("terminationGracePeriodSeconds", 30)
        pod_spec.setdefault("securityContext", {})

    @staticmethod
    def _validate_deployment(name: str, deployment: dict[str, Any]) -> None:
        causes: list[tuple[str, str]] = []
        if not _DNS_SUBDOMAIN.match(name or "") or len(name) > 253:
            causes.append(
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                    "lower case alphanumeric characters, '-' or '.'",
                )
            )
        spec = deployment.get("spec") or {}
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not selector:
            causes.append(("spec.selector", "Required value"))
        elif any(template_labels.get(k) != v for k, v in selector.items()):
            causes.append(
                (
                    "spec.template.metadata.labels",
                    f"Invalid value: {json.dumps(template_labels)}: `selector` does not match template `labels`",
                )
            )
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        if not containers:
            causes.append(("spec.template.spec.containers", "Required value"))
        for index, container in enumerate(containers):
            if not container.get("name"):
                causes.append((f"spec.template.spec.containers[{index}].name", "Required value"))
            if not container.get("image"):
                causes.append((f"spec.template.spec.containers[{index}].image", "Required value"))
        strategy = spec.get("strategy") or {}
        if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate") is not None:
            causes.append(
                ("spec.strategy.rollingUpdate", "Forbidden: may not be specified when strategy `type` is 'Recreate'")
            )
        if causes:
            raise _invalid("Deployment", "apps", name, causes)

    def _create_deployment(self, body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name") or ""
        if name in self.deployments:
            raise ApiError(
                409,
                "AlreadyExists",
                f'deployments.apps "{name}" already exists',
                {"name": name, "group": "apps", "kind": "deployments"},
            )
        deployment = copy.deepcopy(body)
        self._defaults(deployment)
        self._validate_deployment(name, deployment)
        deployment["metadata"]["generation"] = 1
        self._stamp(deployment, created=True)
        deployment["status"] = {"observedGeneration": 1}
        self.deployments[name] = deployment
        self._reconcile_pods(name)
        return copy.deepcopy(deployment)

    def _patch_deployment(self, name: str, current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        updated = merge_patch(current, patch)
        self._defaults(updated)
        if (updated.get("spec") or {}).get("selector") != (current.get("spec") or {}).get("selector"):
            selector = json.dumps((updated.get("spec") or {}).get("selector"))
            raise _invalid(
                "Deployment", "apps", name, [("spec.selector", f"Invalid value: {selector}: field is immutable")]
            )
        self._validate_deployment(name, updated)
        updated["metadata"]["uid"] = current["metadata"]["uid"]
        updated["metadata"]["name"] = name
        if updated.get("spec") != current.get("spec"):
            updated["metadata"]["generation"] = int(current["metadata"].get("generation", 1)) + 1
        self._stamp(updated, created=False)
        self.deployments[name] = updated
        self._reconcile_pods(name)
        return copy.deepcopy(updated)

    # -- pods ---------------------------------------------------------------------------------
    @staticmethod
    def _owner(pod: dict[str, Any]) -> str | None:
        template_hash = pod["metadata"]["labels"].get("pod-template-hash", "")
        for owner in pod["metadata"].get("ownerReferences") or []:
            if owner.get("kind") == "ReplicaSet" and owner["name"].endswith(f"-{template_hash}"):
                return owner["name"][: -len(template_hash) - 1]
        return None

    @staticmethod
    def _template_hash(deployment: dict[str, Any]) -> str:
        text = json.dumps(deployment["spec"]["template"], sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def _reconcile_pods(self, name: str) -> None:
        deployment = self.deployments.get(name)
        mine = {n: p for n, p in self.pods.items() if self._owner(p) == name}
        if deployment is None or int(deployment["spec"].get("replicas", 1)) == 0:
            for pod in mine:
                del self.pods[pod]
            return
        template_hash = self._template_hash(deployment)
        for pod_name, pod in mine.items():
            if pod["metadata"]["labels"].get("pod-template-hash") != template_hash:
                del self.pods[pod_name]  # replaced by the new template's pod
        if name in self.held or any(
            p["metadata"]["labels"].get("pod-template-hash") == template_hash
            for p in self.pods.values()
            if self._owner(p) == name
        ):
            return
        template = deployment["spec"]["template"]
        suffix = uuid.uuid4().hex[:5]
        pod_name = f"{name}-{template_hash}-{suffix}"
        now = rfc3339(datetime.now(UTC))
        containers = template["spec"].get("containers") or []
        self.pods[pod_name] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": pod_name,
                "namespace": self.namespace,
                "uid": str(uuid.uuid4()),
                "creationTimestamp": now,
                "labels": {**(template.get("metadata") or {}).get("labels", {}), "pod-template-hash": template_hash},
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": f"{name}-{template_hash}",
                        "controller": True,
                    }
                ],
            },
            "spec": copy.deepcopy(template["spec"]),
            "status": {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": c["name"],
                        "image": c.get("image"),
                        "ready": True,
                        "restartCount": 0,
                        "state": {"running": {"startedAt": now}},
                    }
                    for c in containers
                ],
            },
        }

    @staticmethod
    def _our_container_status(pod: dict[str, Any], deployment: str) -> dict[str, Any]:
        statuses = pod["status"]["containerStatuses"]
        return next((s for s in statuses if s["name"] == deployment), statuses[0])

    def _pod_log(self, name: str | None, query: dict[str, str]) -> str:
        pod = self.pods.get(name or "")
        if pod is None:
            raise ApiError(404, "NotFound", f'pods "{name}" not found')
        names = [s["name"] for s in pod["status"]["containerStatuses"]]
        container = query.get("container")
        if container is None:
            if len(names) > 1:
                raise ApiError(
                    400,
                    "BadRequest",
                    f"a container name must be specified for pod {name}, choose one of: [{' '.join(names)}]",
                )
            container = names[0]
        if container not in names:
            raise ApiError(400, "BadRequest", f"container {container} is not valid for pod {name}")
        status = next(s for s in pod["status"]["containerStatuses"] if s["name"] == container)
        stored = self.logs.get(self._owner(pod) or "", {})
        previous_run = (status.get("lastState") or {}).get("terminated")
        if query.get("previous") == "true":
            if not previous_run:
                raise ApiError(
                    400, "BadRequest", f'previous terminated container "{container}" in pod "{name}" not found'
                )
            lines = stored.get("previous", [])
        elif "running" in status["state"] or "terminated" in status["state"]:
            lines = stored.get("current", [])
        elif previous_run:
            lines = stored.get("previous", [])  # waiting to restart: the kubelet serves the crashed run
        else:
            reason = status["state"].get("waiting", {}).get("reason", "ContainerCreating")
            raise ApiError(400, "BadRequest", f'container "{container}" in pod "{name}" is waiting to start: {reason}')
        tail = int(query["tailLines"]) if "tailLines" in query else None
        if tail is not None:
            lines = lines[-tail:] if tail else []
        return "".join(f"{line}\n" for line in lines)

    # -- secrets --------------------------------------------------------------------------------
    @staticmethod
    def _validate_secret(name: str, secret: dict[str, Any]) -> None:
        causes: list[tuple[str, str]] = []
        if not _DNS_SUBDOMAIN.match(name or "") or len(name) > 253:
            causes.append(
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                    "lower case alphanumeric characters, '-' or '.'",
                )
            )
        data = secret.get("data") or {}
        for key, value in data.items():
            if not _SECRET_KEY.match(key):
                causes.append(
                    (
                        f"data[{key}]",
                        f'Invalid value: "{key}": a valid config key must consist of '
                        "alphanumeric characters, '-', '_' or '.'",
                    )
                )
            try:
                base64.b64decode(value, validate=True)
            except (ValueError, TypeError):
                raise ApiError(
                    400,
                    "BadRequest",
                    f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at key {key}',
                ) from None
        if secret.get("type") == "kubernetes.io/dockerconfigjson":
            try:
                parsed = json.loads(base64.b64decode(data[".dockerconfigjson"]))
                assert isinstance(parsed, dict) and isinstance(parsed.get("auths"), dict)
            except (KeyError, ValueError, AssertionError):
                causes.append(
                    ("data[.dockerconfigjson]", 'Invalid value: "<secret contents redacted>": invalid docker config')
                )
        if causes:
            raise _invalid("Secret", "", name, causes)

    def _create_secret(self, body: dict[str, Any]) -> dict[str, Any]:
        name = (body.get("metadata") or {}).get("name") or ""
        if name in self.secrets:
            raise ApiError(409, "AlreadyExists", f'secrets "{name}" already exists', {"name": name, "kind": "secrets"})
        secret = copy.deepcopy(body)
        secret.setdefault("type", "Opaque")
        self._validate_secret(name, secret)
        self._stamp(secret, created=True)
        self.secrets[name] = secret
        return copy.deepcopy(secret)

    def _patch_secret(self, name: str, current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
        updated = merge_patch(current, patch)
        if updated.get("type") != current.get("type"):
            raise _invalid("Secret", "", name, [("type", "Invalid value: field is immutable")])
        self._validate_secret(name, updated)
        updated["metadata"]["uid"] = current["metadata"]["uid"]
        self._stamp(updated, created=False)
        self.secrets[name] = updated
        return copy.deepcopy(updated)
