"""The project's own error tree, raised at the edges and caught by the loops.

    ComposerError
    ├── ConfigurationError          bad settings; start-up exits non-zero with one line
    ├── CredentialsKeyError        the private key is missing, unreadable or unusable
    ├── DecryptionError             one secret value could not be decrypted (never carries the value)
    ├── PlatformError
    │   ├── PlatformUnavailable     network failure, timeout, 5xx, unparsable answer: try again later
    │   │   └── PlatformTLSError    the platform certificate is not trusted
    │   ├── PlatformRejected        the platform answered with an error (GraphQL code / HTTP 4xx)
    │   │   ├── PlatformAuthError   bad or missing token, missing capability
    │   │   ├── ManagerUnknown      the platform forgot this manager: register again
    │   │   └── ConnectorGone       a report for a connector deleted meanwhile
    │   └── PlatformUnsupported     platform too old for the composer operations
    └── OrchestratorError
        ├── WorkloadNotFound
        ├── WorkloadConflict        a name already taken (by something that is not ours)
        ├── ImagePullError
        ├── InvalidWorkloadSpec     rejected before any API call (e.g. invalid env name), or by the engine
        ├── OrchestratorForbidden   the engine refused the composer's credentials or permissions (RBAC)
        └── OrchestratorUnavailable engine unreachable or failing: try again later

Messages never include secret values: they name connectors and keys only.
"""

from __future__ import annotations


class ComposerError(Exception):
    """Base of every error the composer raises on purpose."""


class ConfigurationError(ComposerError):
    """Invalid configuration; the message names the key and fits on one line."""


class CredentialsKeyError(ComposerError):
    """The RSA private key is missing, unreadable or not usable."""


class DecryptionError(ComposerError):
    """A sensitive value could not be decrypted. Carries no part of the value."""


class PlatformError(ComposerError):
    """Any failure talking to the platform."""


class PlatformUnavailable(PlatformError):
    """The platform could not be reached or gave an unusable answer; retry later."""


class PlatformTLSError(PlatformUnavailable):
    """The platform's certificate was not trusted (self-signed, unknown CA, wrong host)."""


class PlatformRejected(PlatformError):
    """The platform answered with an explicit error."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(f"{message} [{code}]" if code else message)
        self.code = code


class ManagerUnknown(PlatformRejected):
    """The platform does not know this manager (reinstalled, state lost): register again."""


class ConnectorGone(PlatformRejected):
    """A report was for a connector deleted on the platform since the pass listed it."""


class PlatformAuthError(PlatformRejected):
    """The token is missing, wrong, or lacks a capability."""


class PlatformUnsupported(PlatformRejected):
    """The platform does not know the composer operations (too old)."""


class OrchestratorError(ComposerError):
    """Any failure from the container engine."""


class WorkloadNotFound(OrchestratorError):
    pass


class WorkloadConflict(OrchestratorError):
    """The workload name is taken by something we do not own (or another connector)."""


class ImagePullError(OrchestratorError):
    pass


class InvalidWorkloadSpec(OrchestratorError):
    """The workload cannot be built from the connector's configuration."""


class OrchestratorForbidden(OrchestratorError):
    """The engine rejected the composer's credentials or lacks a permission; the message names it."""


class OrchestratorUnavailable(OrchestratorError):
    """The engine is unreachable or failed; retry later."""
