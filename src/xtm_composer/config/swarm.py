"""`daemon.swarm`: the Rust composer's Swarm options, typed and validated at start-up.

Field names, units and meanings are the Rust composer's, so its configuration loads unchanged:
durations are in nanoseconds, CPU amounts in nano-CPUs (1 CPU = 1e9), memory in bytes. Unset means
"the engine's default". Unlike the Rust composer, a malformed entry (a ulimit without `hard`, an
unknown restart condition, an extra host without an address) is refused here instead of being
dropped or silently replaced.

Kept apart from `settings.py` (which imports it), hence its own tiny base model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

RestartCondition = Literal["none", "on-failure", "any"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SwarmUlimit(_Section):
    name: str = Field(min_length=1)
    soft: int = Field(ge=-1)
    hard: int = Field(ge=-1)

    @model_validator(mode="after")
    def _soft_within_hard(self) -> SwarmUlimit:
        if self.hard != -1 and (self.soft == -1 or self.soft > self.hard):
            raise ValueError(f"ulimit {self.name}: soft ({self.soft}) must not exceed hard ({self.hard})")
        return self


class SwarmResources(_Section):
    cpu_limit: int | None = Field(default=None, ge=0, description="nano-CPUs (1 CPU = 1e9)")
    memory_limit: int | None = Field(default=None, ge=0, description="bytes")
    cpu_reservation: int | None = Field(default=None, ge=0, description="nano-CPUs (1 CPU = 1e9)")
    memory_reservation: int | None = Field(default=None, ge=0, description="bytes")


class SwarmSettings(_Section):
    network: str | None = Field(default=None, min_length=1, description="network (overlay) the services join")
    extra_hosts: list[str] | None = Field(default=None, description='"host:ip" (Docker style) or "ip host" (Swarm)')
    dns: list[str] | None = None
    dns_search: list[str] | None = None
    cap_add: list[str] | None = None
    cap_drop: list[str] | None = None
    sysctls: dict[str, str | int | float] | None = None
    ulimits: list[SwarmUlimit] | None = None
    hostname: str | None = None
    user: str | None = Field(default=None, description='"uid", "uid:gid" or a user name')
    read_only: bool | None = None
    init: bool | None = None
    stop_grace_period: int | None = Field(default=None, ge=0, description="nanoseconds")
    resources: SwarmResources | None = None
    placement_constraints: list[str] | None = None
    placement_preferences: list[str] | None = Field(default=None, description="spread descriptors")
    restart_condition: RestartCondition | None = None
    restart_delay: int | None = Field(default=None, ge=0, description="nanoseconds")
    restart_max_attempts: int | None = Field(default=None, ge=0, description="0 = unlimited")

    @field_validator("extra_hosts")
    @classmethod
    def _host_entries(cls, value: list[str] | None) -> list[str] | None:
        for entry in value or []:
            swarm_host_entry(entry)
        return value


def swarm_host_entry(entry: str) -> str:
    """An extra host in Swarm's `ContainerSpec.Hosts` form, "IP name [aliases…]".

    Accepts Docker's "name:ip" / "name=ip" (split at the first separator, so IPv6 addresses keep
    their colons; `host-gateway` is a valid address) and entries already in Swarm's form.
    """
    text = entry.strip()
    if any(ch.isspace() for ch in text):
        return " ".join(text.split())
    cut = min((i for i in (text.find("="), text.find(":")) if i >= 0), default=-1)
    name, address = (text[:cut], text[cut + 1 :].strip("[]")) if cut >= 0 else ("", "")
    if not name or not address:
        raise ValueError(f"extra host {entry!r}: expected 'name:address' or 'address name'")
    return f"{address} {name}"
