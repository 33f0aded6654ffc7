"""Small helpers shared by the Swarm and Portainer tests."""

from __future__ import annotations

import asyncio
import time

from xtm_composer.domain import MountedFile, PlatformKind, WorkloadSpec
from xtm_composer.orchestrators.specs import build_env, ownership_labels

TRICKY_VALUES = {
    "WITH_EQUALS": "a=b=c==",
    "MULTILINE": "line1\nline2\r\nline3",
    "UNICODE": "pässwörd ✓ 威胁情报",
    "QUOTES": "\"double\" 'single' $HOME `cmd`",
    "EMPTY": "",
}


def make_spec(
    manager_id: str,
    image: str,
    *,
    name: str,
    cid: str = "c1",
    hash_: str = "h1",
    extra: dict[str, str] | None = None,
    files: tuple[MountedFile, ...] = (),
) -> WorkloadSpec:
    env = {"CONNECTOR_NAME": name, "DEMO_INTERVAL": "1", **(extra or {})}
    return WorkloadSpec(
        name=name,
        image=image,
        env=build_env(env.items(), config_hash=hash_),
        labels=ownership_labels(manager_id=manager_id, connector_id=cid, platform=PlatformKind.OPENCTI),
        config_hash=hash_,
        files=files,
    )


async def wait_for(predicate, timeout=30.0, interval=0.25):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await predicate()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met in {timeout}s (last: {last!r})")
