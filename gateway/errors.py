"""One JSON error shape for every HTTP error: {"error": {"code", "message", "field"?, "request_id"}}."""

from __future__ import annotations

from typing import Any

import grpc
from flask import Response, g, jsonify

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
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
}


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
        return ApiError(
            status,
            "service_unavailable",
            "a back-end service is not answering right now (服务暂不可用); retry shortly",
            headers={"Retry-After": "2"},
        )
    if status == 502:
        return ApiError(502, "upstream_error", f"a back-end service failed (request id {g.get('request_id')})")
    reason, field = error_details(exc, code.name.lower())
    return ApiError(status, reason, exc.details() or code.name, field=field)
