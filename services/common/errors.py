"""Errors a handler raises; the gRPC interceptor maps each to its status code with the message.

Messages are for the caller: say what was wrong and what to do, never include personal data.
"""

from __future__ import annotations

import grpc


class HonglingError(Exception):
    """Base of the errors that reach a caller as a status code with a readable message."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "internal"

    def __init__(self, message: str, *, field: str | None = None, reason: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        if reason is not None:
            self.reason = reason


class InvalidArgument(HonglingError):
    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "invalid_argument"


class NotFound(HonglingError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "not_found"


class AlreadyExists(HonglingError):
    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "already_exists"


class FailedPrecondition(HonglingError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "failed_precondition"


class Aborted(HonglingError):
    """A conditional write lost: the record changed since the caller read it (stale version)."""

    code = grpc.StatusCode.ABORTED
    reason = "version_conflict"


class PermissionDenied(HonglingError):
    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "permission_denied"


class Unauthenticated(HonglingError):
    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "unauthenticated"


class Unavailable(HonglingError):
    """A service or store this call depends on cannot be reached; nothing was changed, the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "unavailable"


class UnknownTenant(NotFound):
    reason = "unknown_tenant"
