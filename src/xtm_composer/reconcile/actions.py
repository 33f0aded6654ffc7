"""Small frozen action objects: the planner's output, the executor's input."""

from __future__ import annotations

from dataclasses import dataclass

from xtm_composer.domain import Connector, CurrentStatus, Workload


@dataclass(frozen=True, slots=True)
class Deploy:
    connector: Connector
    name: str
    start: bool
    kind = "deploy"


@dataclass(frozen=True, slots=True)
class Recreate:
    """The configuration changed: replace the workload (decrypting first, so a bad secret keeps the old one)."""

    connector: Connector
    name: str
    old: Workload
    start: bool
    kind = "recreate"


@dataclass(frozen=True, slots=True)
class Start:
    connector: Connector
    workload: Workload
    kind = "start"


@dataclass(frozen=True, slots=True)
class Stop:
    connector: Connector
    workload: Workload
    reason: str = "requested"
    kind = "stop"


@dataclass(frozen=True, slots=True)
class Remove:
    workload: Workload
    reason: str
    kind = "remove"

    @property
    def connector_id(self) -> str | None:
        return self.workload.connector_id


@dataclass(frozen=True, slots=True)
class ReportStatus:
    connector: Connector
    status: CurrentStatus
    kind = "report-status"


@dataclass(frozen=True, slots=True)
class ReportHealth:
    connector: Connector
    workload: Workload
    kind = "report-health"


@dataclass(frozen=True, slots=True)
class ReportLogs:
    connector: Connector
    workload: Workload
    kind = "report-logs"


@dataclass(frozen=True, slots=True)
class Collision:
    """The connector's workload name is held by another connector's workload: report, never act."""

    connector: Connector
    name: str
    holder: Workload
    kind = "collision"


WorkloadAction = Deploy | Recreate | Start | Stop
Action = Deploy | Recreate | Start | Stop | Remove | ReportStatus | ReportHealth | ReportLogs | Collision


def connector_id_of(action: Action) -> str | None:
    return action.connector_id if isinstance(action, Remove) else action.connector.id


def describe(action: Action) -> str:
    """One human line for `plan` output and logs (names and ids only, never values)."""
    match action:
        case Deploy(connector=c, name=name, start=start):
            return f"deploy {name} for {c.name!r}" + (" and start it" if start else "")
        case Recreate(connector=c, name=name, old=old):
            return f"recreate {old.name} as {name} for {c.name!r} (configuration changed)"
        case Start(workload=w):
            return f"start {w.name}"
        case Stop(workload=w, reason=reason):
            return f"stop {w.name}" + ("" if reason == "requested" else f" ({reason})")
        case Remove(workload=w, reason=reason):
            return f"remove {w.name} ({reason})"
        case ReportStatus(connector=c, status=status):
            return f"report {c.name!r} as {status.value}"
        case ReportHealth(connector=c):
            return f"report health of {c.name!r}"
        case ReportLogs(connector=c):
            return f"report logs of {c.name!r}"
        case Collision(connector=c, name=name, holder=holder):
            return f"name collision: {name} for {c.name!r} is held by connector {holder.connector_id}"
    raise AssertionError(action)
