"""`EmulatorAdmin`: a small synchronous httpx client for the emulator's `/admin` API.

Used by tests, the demo and the `emulator` CLI commands. Every failure (unreachable emulator, 4xx
answer, non-JSON body) raises `EmulatorAdminError` with a one-line message.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

import httpx

JSON = dict[str, Any]


class EmulatorAdminError(Exception):
    """An admin call failed; `status` is the HTTP status, or None when nothing answered."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EmulatorAdmin:
    """Client of `{url}/admin`, authenticated with the emulator's bearer token."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._http = httpx.Client(
            base_url=f"{self.url}/admin",
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> EmulatorAdmin:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        where = f"{method} /admin{path}"
        try:
            response = self._http.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise EmulatorAdminError(f"cannot reach the emulator at {self.url}: {exc}") from exc
        try:
            payload = response.json()
        except ValueError as exc:
            raise EmulatorAdminError(
                f"{where}: HTTP {response.status_code} with a non-JSON body", status=response.status_code
            ) from exc
        if response.is_error:
            message = payload.get("error") if isinstance(payload, dict) else None
            raise EmulatorAdminError(
                f"{where}: HTTP {response.status_code}: {message or response.reason_phrase}",
                status=response.status_code,
            )
        return payload

    # -- connectors ----------------------------------------------------------------------------

    def list(self) -> builtins.list[JSON]:
        return self._call("GET", "/connectors")  # type: ignore[no-any-return]

    def get(self, connector_id: str) -> JSON:
        return self._call("GET", f"/connectors/{connector_id}")  # type: ignore[no-any-return]

    def find(self, name: str) -> JSON | None:
        """The connector with this exact name, or None."""
        return next((c for c in self.list() if c["name"] == name), None)

    def add_connector(
        self,
        name: str,
        image: str,
        *,
        config: Mapping[str, str] | None = None,
        secrets: Mapping[str, str] | None = None,
        type: str | None = None,
        start: bool = False,
    ) -> JSON:
        body: JSON = {"name": name, "image": image, "config": dict(config or {}), "secrets": dict(secrets or {})}
        if type is not None:
            body["type"] = type
        body["start"] = start
        return self._call("POST", "/connectors", body)  # type: ignore[no-any-return]

    def edit(
        self,
        connector_id: str,
        *,
        name: str | None = None,
        image: str | None = None,
        config: Mapping[str, str | None] | None = None,
        secrets: Mapping[str, str | None] | None = None,
    ) -> JSON:
        """Change what is given; in `config`/`secrets` a None value removes the key."""
        fields = {"name": name, "image": image, "config": config, "secrets": secrets}
        body = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in fields.items() if v is not None}
        return self._call("PATCH", f"/connectors/{connector_id}", body)  # type: ignore[no-any-return]

    def start(self, connector_id: str) -> JSON:
        return self._call("POST", f"/connectors/{connector_id}/start")  # type: ignore[no-any-return]

    def stop(self, connector_id: str) -> JSON:
        return self._call("POST", f"/connectors/{connector_id}/stop")  # type: ignore[no-any-return]

    def reset(self, connector_id: str) -> JSON:
        return self._call("POST", f"/connectors/{connector_id}/reset")  # type: ignore[no-any-return]

    def delete(self, connector_id: str) -> None:
        self._call("DELETE", f"/connectors/{connector_id}")

    # -- manager, platform, counters -----------------------------------------------------------

    def manager(self) -> JSON | None:
        return self._call("GET", "/manager")  # type: ignore[no-any-return]

    def forget_manager(self) -> bool:
        return bool(self._call("POST", "/manager/forget")["forgotten"])

    def platform(self) -> JSON:
        return self._call("GET", "/platform")  # type: ignore[no-any-return]

    def set_platform(
        self,
        *,
        version: str | None = None,
        outage: bool | None = None,
        encryption: int | None = None,
        public_url: str | None = None,
        fault: str | None = None,
        permission: bool | None = None,
    ) -> JSON:
        fields = {
            "version": version,
            "outage": outage,
            "encryption": encryption,
            "public_url": public_url,
            "fault": fault,
            "permission": permission,
        }
        body = {k: v for k, v in fields.items() if v is not None}
        return self._call("PUT", "/platform", body)  # type: ignore[no-any-return]

    def stats(self) -> JSON:
        return self._call("GET", "/stats")  # type: ignore[no-any-return]

    def history(self) -> builtins.list[JSON]:
        """Every `updateConnectorCurrentStatus` report, oldest first."""
        return self._call("GET", "/history")  # type: ignore[no-any-return]
