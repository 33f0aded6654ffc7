"""Pure pieces shared by the Docker-API orchestrators (Docker, Swarm, Portainer).

Engine time stamps, container states and the registry-credentials header. No I/O here.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

from xtm_composer.domain import WorkloadState

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
