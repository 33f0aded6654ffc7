"""Errors raised by the emulator's store, mapped to GraphQL codes and admin HTTP statuses at the edges.

EmulatorError               code FUNCTIONAL_ERROR, HTTP 400
├── NotFoundError           unknown connector/manager: FUNCTIONAL_ERROR, HTTP 404
├── ConflictError           duplicate connector name: FUNCTIONAL_ERROR, HTTP 409
└── UnsupportedError        a second connector manager: UNSUPPORTED_ERROR, HTTP 409
"""

from __future__ import annotations


class EmulatorError(Exception):
    """A request the emulated platform refuses, with the GraphQL code OpenCTI would answer."""

    code = "FUNCTIONAL_ERROR"
    http_status = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFoundError(EmulatorError):
    """The element does not exist (OpenCTI: "Cant find element to update")."""

    http_status = 404


class ConflictError(EmulatorError):
    """The change would break a uniqueness rule of the platform."""

    http_status = 409


class UnsupportedError(EmulatorError):
    """The platform does not support the request (e.g. a second connector manager)."""

    code = "UNSUPPORTED_ERROR"
    http_status = 409


class DatabaseError(EmulatorError):
    """The platform's storage failed (an injected fault)."""

    code = "DATABASE_ERROR"
    http_status = 500
