"""The `Orchestrator` protocol: the only way the reconciler touches an engine."""

from __future__ import annotations

from typing import Protocol

from xtm_composer.domain import Health, Workload, WorkloadSpec


class Orchestrator(Protocol):
    async def list_workloads(self, *, manager_id: str) -> list[Workload]:
        """Every workload labelled with our manager id, in bulk (one or a few engine calls).

        Raises `OrchestratorUnavailable` rather than returning a partial list.
        """

    async def prepare(self, spec: WorkloadSpec) -> None:
        """Everything that can fail before the old workload is touched (e.g. pulling the image).

        A recreate calls it before removing the running workload, so a new image that cannot be
        pulled leaves the old one running.
        """

    async def deploy(self, spec: WorkloadSpec, *, start: bool) -> Workload:
        """Create the workload (pulling its image when missing) and start it when asked."""

    async def start(self, workload: Workload) -> None: ...

    async def stop(self, workload: Workload) -> None: ...

    async def remove(self, workload: Workload) -> None:
        """Stop and delete the workload; a workload already gone is not an error."""

    async def health(self, workload: Workload) -> Health:
        """Restart count, start time and reboot-loop flag, read fresh from the engine."""

    async def logs(self, workload: Workload, *, tail: int) -> list[str]:
        """The last `tail` log lines (stdout and stderr), oldest first."""

    async def close(self) -> None: ...
