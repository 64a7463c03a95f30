"""One JSON error shape for every HTTP error: {"error": {"code", "message", "field"?, "request_id"}}."""

from __future__ import annotations

from typing import Any

import grpc
from flask import Response, g, jsonify

from services.common.dependencies import is_unavailable
from services.common.grpc_server import error_details

GRPC_TO_HTTP = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.UNAVAILABLE: 503,
    # A service that did not answer within the gateway's deadline is, to the client, not answering: while a
    # database is down, the first calls wait out the driver's server selection before the service knows
    # (services/common/dependencies.py). 503 with Retry-After says what to do (retry); 504 said the same less
    # plainly, and clients (and the resilience suite) treat 503 as "retry later".
    grpc.StatusCode.DEADLINE_EXCEEDED: 503,
}
RETRY_AFTER_SECONDS = "2"


def unavailable(what: str = "a back-end service") -> ApiError:
    """503 with Retry-After: something this request needs is not answering; nothing was done, retry."""
    return ApiError(
        503,
        "service_unavailable",
        f"{what} is not answering right now (服务暂不可用); retry shortly",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


def storage_unavailable(exc: BaseException) -> ApiError | None:
    """503 when an error the gateway's own code raised says its database could not be reached (the audit
    log, governance, accounts); None for any other error."""
    return unavailable("the database") if is_unavailable(exc) else None


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, *, field: str | None = None, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or {}


def error_response(err: ApiError) -> Response:
    body: dict[str, Any] = {"code": err.code, "message": err.message, "request_id": g.get("request_id")}
    if err.field:
        body["field"] = err.field
    resp = jsonify({"error": body})
    resp.status_code = err.status
    for k, v in err.headers.items():
        resp.headers[k] = v
    return resp


def from_rpc_error(exc: grpc.RpcError) -> ApiError:
    """Translate a service's status into the HTTP error the portal sees (never a stack trace)."""
    code = exc.code()
    status = GRPC_TO_HTTP.get(code, 502)
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return unavailable()
    if status == 502:
        return ApiError(502, "upstream_error", f"a back-end service failed (request id {g.get('request_id')})")
    reason, field = error_details(exc, code.name.lower())
    return ApiError(status, reason, exc.details() or code.name, field=field)
