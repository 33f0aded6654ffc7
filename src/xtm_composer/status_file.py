"""What a running composer knows that neither the platform nor the engine keeps: per-connector
last error, backoff and reboot-loop hold. The daemon writes it after each pass; `xtm-composer
status` reads it. Written atomically; it never contains a configuration value."""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from xtm_composer.domain import PlatformKind
from xtm_composer.reconcile.memory import ConnectorMemory


def status_path(data_directory: Path, platform: PlatformKind) -> Path:
    return data_directory / f"status-{platform.value}.json"


def write_status(path: Path, *, manager_id: str, memory: dict[str, ConnectorMemory], now: float) -> None:
    payload = {
        "manager_id": manager_id,
        "written_at": time.time(),
        "connectors": {
            cid: {
                "last_error": mem.last_error,
                "failures": mem.failures,
                "backoff_seconds": max(0.0, round(mem.backoff_until - now, 1)),
                "held_for_reboot_loop": mem.held_for_loop,
            }
            for cid, mem in memory.items()
        },
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".status-")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(payload, handle)
    os.replace(temporary, path)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
