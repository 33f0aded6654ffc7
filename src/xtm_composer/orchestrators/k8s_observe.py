"""Pure readings of Kubernetes objects: what a connector's pods say, what an API error means.

State comes from the pods, never from the desired replica count: a Deployment scaled to 1 whose
container waits in CrashLoopBackOff or ImagePullBackOff is not up, and says why.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from xtm_composer.domain import Health, WorkloadState
from xtm_composer.orchestrators.health import health_from_state
from xtm_composer.orchestrators.specs import REDACTED

# Waiting reasons that mean "failing, the kubelet retries with back-off", as opposed to the normal
# steps of a start (ContainerCreating, PodInitializing).
FAILING_REASONS = frozenset(
    {
        "CrashLoopBackOff",
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)
NOTE_PREFIX = "[xtm-composer]"


def parse_time(raw: Any) -> datetime | None:
    """RFC 3339 as the API server writes it (`2024-05-01T10:00:00Z`)."""
    if not isinstance(raw, str) or not raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _labels(obj: Mapping[str, Any]) -> dict[str, str]:
    return dict((obj.get("metadata") or {}).get("labels") or {})


def match_labels(deployment: Mapping[str, Any]) -> dict[str, str]:
    return dict(((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels") or {})


def pods_of(name: str, selector: Mapping[str, str], pods: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The pods of Deployment `name` (terminating ones included): owned by one of its ReplicaSets
    (`<name>-<pod-template-hash>`), or — without owner information — matching its selector. Two
    Deployments of one connector (a rename in progress) share a selector; owners tell them apart."""
    mine = []
    for pod in pods:
        metadata = pod.get("metadata") or {}
        labels = metadata.get("labels") or {}
        owners = [o for o in metadata.get("ownerReferences") or [] if o.get("kind") == "ReplicaSet"]
        template_hash = labels.get("pod-template-hash")
        if owners and template_hash:
            if any(o.get("name") == f"{name}-{template_hash}" for o in owners):
                mine.append(dict(pod))
        elif selector and all(labels.get(k) == v for k, v in selector.items()):
            mine.append(dict(pod))
    return mine


def _terminating(pod: Mapping[str, Any]) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def current_pod(pods: Sequence[Mapping[str, Any]], *, live_only: bool = True) -> dict[str, Any] | None:
    """The newest pod (the current template's after a rollout); terminating pods only when
    `live_only` is False and no live pod is left (the last logs of a stopped connector)."""
    live = [p for p in pods if not _terminating(p)]
    candidates = live or ([] if live_only else list(pods))
    if not candidates:
        return None
    newest = max(
        candidates,
        key=lambda p: ((p.get("metadata") or {}).get("creationTimestamp") or "", (p.get("metadata") or {}).get("name")),
    )
    return dict(newest)


def container_status(pod: Mapping[str, Any] | None, container: str) -> dict[str, Any] | None:
    """Status of the connector container (named like the Deployment; the first one otherwise)."""
    if not pod:
        return None
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == container:
            return dict(status)
    return dict(statuses[0]) if statuses else None


@dataclass(frozen=True, slots=True)
class PodReading:
    """What a Deployment's pods say about the connector container."""

    state: WorkloadState
    detail: str | None = None  # why it is not up, for people (e.g. "CrashLoopBackOff: back-off 5m0s …")
    reason: str | None = None  # the machine reason (e.g. "CrashLoopBackOff")
    restart_count: int = 0
    started_at: datetime | None = None
    running: bool = False
    crashed_before: bool = False  # a previous instance terminated (the kubelet keeps its logs)
    has_logs: bool = False  # the kubelet has logs for the "current" instance
    pod_name: str | None = None


def read_pods(pods: Sequence[Mapping[str, Any]], *, container: str, replicas: int) -> PodReading:
    """The connector's state from its pods, given the Deployment's desired replica count."""
    if replicas <= 0:
        # Stopped; a pod still terminating keeps its logs for one last push.
        return PodReading(state=WorkloadState.EXITED, pod_name=_name(current_pod(pods, live_only=False)))
    pod = current_pod(pods)
    if pod is None:
        return PodReading(state=WorkloadState.PENDING, detail="no pod yet", reason="NoPod")
    status = container_status(pod, container)
    pod_status = pod.get("status") or {}
    if status is None:
        # Not scheduled or not created yet: say why when the scheduler did (e.g. Unschedulable).
        conditions = [c for c in pod_status.get("conditions") or [] if c.get("status") == "False" and c.get("reason")]
        if conditions:
            reason = str(conditions[0]["reason"])
            message = conditions[0].get("message")
            detail = f"{reason}: {message}" if message else reason
        else:
            reason, detail = None, f"pod {pod_status.get('phase') or 'Pending'}"
        return PodReading(state=WorkloadState.PENDING, detail=detail, reason=reason, pod_name=_name(pod))
    restarts = int(status.get("restartCount") or 0)
    state = status.get("state") or {}
    last = (status.get("lastState") or {}).get("terminated")
    common: dict[str, Any] = {"restart_count": restarts, "crashed_before": bool(last), "pod_name": _name(pod)}
    if "running" in state:
        started = parse_time((state["running"] or {}).get("startedAt"))
        return PodReading(state=WorkloadState.RUNNING, started_at=started, running=True, has_logs=True, **common)
    if "terminated" in state:
        terminated = state["terminated"] or {}
        reason = terminated.get("reason") or "Terminated"
        detail = f"{reason} (exit code {terminated.get('exitCode')})"
        started = parse_time(terminated.get("startedAt"))
        return PodReading(
            state=WorkloadState.PENDING, detail=detail, reason=reason, started_at=started, has_logs=True, **common
        )
    waiting = state.get("waiting") or {}
    reason = waiting.get("reason") or "Waiting"
    message = waiting.get("message")
    # While it waits to restart, its last run is the start that counts for the reboot loop.
    started = parse_time((last or {}).get("startedAt"))
    detail = f"{reason}: {message}" if message else reason
    return PodReading(
        state=WorkloadState.PENDING, detail=detail, reason=reason, started_at=started, has_logs=bool(last), **common
    )


def _name(pod: Mapping[str, Any] | None) -> str | None:
    return (pod.get("metadata") or {}).get("name") if pod else None


def health_of(reading: PodReading, *, now: datetime) -> Health:
    return health_from_state(
        restart_count=reading.restart_count,
        started_at=reading.started_at,
        now=now,
        reason=None if reading.running else reading.reason,
    )


@dataclass(frozen=True, slots=True)
class LogPlan:
    previous: bool  # read the previous (crashed) instance's logs
    current: bool  # read the current instance's logs
    note: str | None  # a last line saying why the container is not running


def log_plan(reading: PodReading) -> LogPlan:
    """Which logs exist, as the kubelet serves them: a running container's, plus its crashed
    predecessor's; a container waiting after a crash serves that crashed run as its current logs;
    a container that never ran has none (only the note saying why)."""
    note = None
    if reading.state is WorkloadState.PENDING and reading.detail:
        note = f"{NOTE_PREFIX} container not running: {reading.detail} (restarts: {reading.restart_count})"
    if reading.pod_name is None:
        return LogPlan(previous=False, current=False, note=note)
    if reading.running:
        return LogPlan(previous=reading.crashed_before, current=True, note=None)
    if reading.state is WorkloadState.EXITED:
        return LogPlan(previous=False, current=True, note=None)
    return LogPlan(previous=False, current=reading.has_logs, note=note)


# -- API errors -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ApiStatus:
    """The `Status` object of a failed API call (what can be read of it)."""

    code: int
    reason: str = ""
    message: str = ""
    causes: tuple[tuple[str, str], ...] = ()  # (field, message)


def parse_status(code: int, body: str | bytes | None) -> ApiStatus:
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict):
        data = {}
    causes = tuple(
        (str(c.get("field") or ""), str(c.get("message") or ""))
        for c in (data.get("details") or {}).get("causes") or []
        if isinstance(c, dict)
    )
    return ApiStatus(
        code=code, reason=str(data.get("reason") or ""), message=str(data.get("message") or ""), causes=causes
    )


_FORBIDDEN = re.compile(
    r'cannot (?P<verb>[\w-]+) resource "(?P<resource>[^"]+)"(?: in API group "(?P<group>[^"]*)")?'
    r'(?: in the namespace "(?P<namespace>[^"]*)")?'
)
_USER = re.compile(r'User "(?P<user>[^"]+)"')


def forbidden_explanation(status: ApiStatus) -> str:
    """`403` → which verb on which resource the composer's account lacks, and where to grant it."""
    found = _FORBIDDEN.search(status.message)
    if not found:
        return f"forbidden by the API server: {status.message or status.reason or 'no detail'}"
    group = found["group"] or ""
    resource = found["resource"] if not group else f"{found['resource']}.{group}"
    where = f" in namespace {found['namespace']}" if found["namespace"] else ""
    user = _USER.search(status.message)
    who = f" ({user['user']})" if user else ""
    return (
        f"forbidden: the composer's account{who} may not {found['verb']} {resource}{where}; "
        f"grant it in its Role (see deploy/kubernetes/rbac.yaml)"
    )


def is_selector_mismatch(status: ApiStatus) -> bool:
    """The 422 that only a delete-and-recreate cures: the stored selector no longer matches our pod
    labels, or it would have to change (it is immutable)."""
    if status.code != 422:
        return False
    texts = [status.message, *(f"{f}: {m}" for f, m in status.causes)]
    for text in texts:
        lowered = text.lower()
        if "selector" in lowered and ("does not match" in lowered or "immutable" in lowered):
            return True
    return False


def invalid_explanation(status: ApiStatus) -> str:
    """`422` → the offending fields and why, one line."""
    if status.causes:
        parts = [f"{f}: {m}" if f else m for f, m in status.causes]
        return "rejected by the API server: " + "; ".join(parts)
    return f"rejected by the API server: {status.message or status.reason or 'invalid'}"


_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')
MIN_MASKED_SUBSTRING = 4


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` without any secret value: exact quoted values of any length, substrings of 4+ characters."""
    values = {s for s in secrets if s}
    if not values:
        return text
    text = _QUOTED.sub(lambda m: f'"{REDACTED}"' if _unescape(m.group(1)) in values else m.group(0), text)
    for value in sorted(values, key=len, reverse=True):
        if len(value) >= MIN_MASKED_SUBSTRING:
            text = text.replace(value, REDACTED)
    return text


def _unescape(quoted: str) -> str:
    try:
        return json.loads(f'"{quoted}"')
    except ValueError:
        return quoted
