"""Pure pieces shared by the Docker-API orchestrators (Docker, Swarm, Portainer).

Engine time stamps, container states and the registry-credentials header. No I/O here.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from xtm_composer.domain import HASH_KEY, LABEL_CONFIG_HASH, Workload, WorkloadState
from xtm_composer.orchestrators.specs import split_env_line

CONTAINER_STATES: dict[str, WorkloadState] = {
    "running": WorkloadState.RUNNING,
    "restarting": WorkloadState.RESTARTING,
    "created": WorkloadState.CREATED,
    "exited": WorkloadState.EXITED,
    "paused": WorkloadState.PAUSED,
    "dead": WorkloadState.DEAD,
    "removing": WorkloadState.EXITED,
}


def container_state(raw: Any) -> WorkloadState:
    return CONTAINER_STATES.get(str(raw or "").lower(), WorkloadState.UNKNOWN)


def parse_docker_time(raw: Any) -> datetime | None:
    """Docker gives RFC 3339 with up to nanoseconds; `0001-01-01T00:00:00Z` means never."""
    if not isinstance(raw, str) or not raw or raw.startswith("0001-"):
        return None
    text = raw.strip()
    offset = "+00:00"
    if text.endswith("Z"):
        text = text[:-1]
    elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
        text, offset = text[:-6], text[-6:]
    if "." in text:
        head, frac = text.split(".", 1)
        digits = "".join(ch for ch in frac if ch.isdigit())[:6]
        text = f"{head}.{digits}" if digits else head
    try:
        return datetime.fromisoformat(text + offset).astimezone(UTC)
    except ValueError:
        return None


def registry_auth_header(auth: dict[str, str] | None) -> str | None:
    """`X-Registry-Auth`: the credentials as URL-safe base64 JSON (what the Engine API expects)."""
    if not auth:
        return None
    return base64.urlsafe_b64encode(json.dumps(auth).encode("utf-8")).decode("ascii")


class ContainerRows:
    """Workloads from `GET /containers/json` rows, for the Docker-API orchestrators.

    The hash comes from our own label; containers without it (made by the Rust composer) have it
    in their env only, which never changes for a container id: it is read once and remembered.
    """

    def __init__(self) -> None:
        self._hash_by_container: dict[str, str | None] = {}

    def to_inspect(self, rows: list[Mapping[str, Any]]) -> list[str]:
        """Container ids whose hash is neither labelled nor remembered."""
        return [
            str(row["Id"])
            for row in rows
            if LABEL_CONFIG_HASH not in (row.get("Labels") or {}) and row["Id"] not in self._hash_by_container
        ]

    def learn(self, container_id: str, inspected: Mapping[str, Any]) -> None:
        env = dict(split_env_line(line) for line in (inspected.get("Config") or {}).get("Env") or [])
        self._hash_by_container[container_id] = env.get(HASH_KEY)

    def remember(self, container_id: str, config_hash: str) -> None:
        self._hash_by_container[container_id] = config_hash

    def workloads(self, rows: list[Mapping[str, Any]]) -> list[Workload]:
        live = {str(row["Id"]) for row in rows}
        for gone in set(self._hash_by_container) - live:
            del self._hash_by_container[gone]
        return [self._workload(row) for row in rows]

    def _workload(self, row: Mapping[str, Any]) -> Workload:
        labels = dict(row.get("Labels") or {})
        names = row.get("Names") or []
        container_id = str(row["Id"])
        name = names[0].lstrip("/") if names else container_id[:12]
        config_hash = (
            labels[LABEL_CONFIG_HASH] if LABEL_CONFIG_HASH in labels else self._hash_by_container.get(container_id)
        )
        return Workload(
            name=name,
            state=container_state(row.get("State")),
            labels=labels,
            config_hash=config_hash,
            engine_id=container_id,
        )
