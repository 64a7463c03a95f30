"""The gateway's Flask application: JSON API for portals, health, metrics.

Every request is authenticated (gateway/identity.py) and checked against the one policy table
(gateway/policy.py) before its view runs; views call the services as the authenticated principal.
"""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from flask import Flask, Response, g, jsonify, request
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from gateway.clients import Clients
from gateway.errors import ApiError, error_response, storage_unavailable
from gateway.governance.store import open_store
from gateway.tokens import TokenStore
from services.common import context
from services.common.audit import open_log
from services.common.settings import Settings
from services.common.tenants import all_tenants, tenant_slugs

log = logging.getLogger("gateway.http")

HTTP_REQUESTS = Counter(
    "hongling_http_requests_total", "HTTP requests served by the gateway.", ["method", "route", "status"]
)
HTTP_SECONDS = Histogram(
    "hongling_http_request_seconds",
    "HTTP request latency at the gateway.",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
MAX_BODY_BYTES = 1 << 20


def json_body() -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    raw = request.get_data(cache=True)
    if not raw:
        raise ApiError(400, "invalid_json", "request body is empty; send a JSON object (请求体为空)")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ApiError(400, "invalid_json", "request body is not UTF-8 encoded (请使用UTF-8编码)") from None
    except json.JSONDecodeError as exc:
        raise ApiError(
            400, "invalid_json", f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    if not isinstance(data, dict):
        raise ApiError(400, "invalid_json", "request body must be a JSON object")
    return data


def create_app(settings: Settings, clients: Clients | None = None) -> Flask:
    """The gateway app. Raises gateway.tokens.TokenFileError if the API token file cannot be read."""
    app = Flask("hongling-gateway", static_folder=None)  # no static route: every route is in the policy table
    app.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    tokens = TokenStore(settings.api_tokens_file)
    tokens.load()
    app.extensions["hongling.clients"] = clients or Clients.connect(settings)
    app.extensions["hongling.settings"] = settings
    app.extensions["hongling.tokens"] = tokens
    app.extensions["hongling.audit"] = open_log(settings)  # hash-chained, district level (hl_audit)
    app.extensions["hongling.governance"] = open_store(settings)  # department requests and grants

    @app.before_request
    def _begin() -> None:
        incoming = request.headers.get("X-Request-Id", "")
        g.request_id = incoming if REQUEST_ID_RE.match(incoming) else context.new_request_id()
        g.started = time.perf_counter()
        tenant = (request.view_args or {}).get("tenant")
        known = tenant if tenant in tenant_slugs() else None  # log only real tenant slugs
        g.ctx = context.bound(request_id=g.request_id, trace="gateway", tenant=known)
        g.ctx.__enter__()

    from gateway import policy, ratelimit

    limits = ratelimit.install(app, settings)  # per client IP, before authentication: refused calls count too
    policy.install(app, tokens)  # after _begin: refusals carry the request id
    app.before_request(limits.check_principal)  # per caller, after authentication
    app.before_request(policy.hold_to_community)  # a community worker's record checks (reads: after the limit)

    @app.after_request
    def _finish(resp: Response) -> Response:
        resp.headers["X-Request-Id"] = g.get("request_id", "")
        route = request.url_rule.rule if request.url_rule else "unmatched"
        elapsed = time.perf_counter() - g.get("started", time.perf_counter())
        HTTP_REQUESTS.labels(request.method, route, str(resp.status_code)).inc()
        HTTP_SECONDS.labels(request.method, route).observe(elapsed)
        identity = g.get("identity")
        log.info(
            "%s %s -> %d in %.1f ms (%s, %s)",
            request.method,
            route,
            resp.status_code,
            elapsed * 1000,
            identity.principal.sub if identity else "-",
            identity.principal.role if identity else "-",
        )
        return resp

    @app.teardown_request
    def _end(_exc: BaseException | None) -> None:
        ctx = g.pop("ctx", None)
        if ctx is not None:
            ctx.__exit__(None, None, None)

    @app.errorhandler(ApiError)
    def _api_error(err: ApiError) -> Response:
        return error_response(err)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large", 415: "unsupported_media_type"}
        status = exc.code or 500
        messages = {
            404: f"no such endpoint: {request.path} (接口不存在)",
            405: f"{request.method} is not allowed on {request.path}",
            413: f"request body is larger than {request.max_content_length or MAX_BODY_BYTES} bytes (请求体过大)",
        }
        # A 405 says which methods the path takes (RFC 9110 §15.5.6), as werkzeug's own answer would.
        allow: dict[str, str] = {}
        if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
            allow["Allow"] = ", ".join(exc.valid_methods)
        return error_response(
            ApiError(
                status, code.get(status, "http_error"), messages.get(status, exc.description or exc.name), headers=allow
            )
        )

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        down = storage_unavailable(exc)  # its database down is 503 + Retry-After, not a 500
        if down is not None:
            log.warning("the database is not answering: %s", exc)
            return error_response(down)
        log.exception("unhandled error")
        return error_response(
            ApiError(
                500, "internal", f"internal error (request id {g.get('request_id')}); the operators have the details"
            )
        )

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify({"status": "ok"})

    @app.get("/readyz")
    def readyz() -> Response:
        # the services' health (their databases included) and the gateway's own stores, named when down
        from gateway import readiness

        services = app.extensions["hongling.clients"].health()
        stores = readiness.check_stores(readiness.store_checks(app.extensions["hongling.audit"]))
        ready, body = readiness.readiness(services, stores)
        resp = jsonify(body)
        resp.status_code = 200 if ready else 503
        if not ready:
            resp.headers["Retry-After"] = "5"
        return resp

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(generate_latest(), mimetype=CONTENT_TYPE_LATEST)

    @app.get("/api/v1/tenants")
    def tenants() -> Response:
        return jsonify(
            {
                "tenants": [
                    {"slug": t.slug, "name_zh": t.name_zh, "name_en": t.name_en, "kind": t.kind} for t in all_tenants()
                ]
            }
        )

    from gateway.docs import bp as docs_bp
    from gateway.open311 import bp as open311_bp
    from gateway.routes_alliance_activities import bp as alliance_activities_bp
    from gateway.routes_alliance_ledger import bp as alliance_ledger_bp
    from gateway.routes_alliance_meetings import bp as alliance_meetings_bp
    from gateway.routes_alliance_posts import bp as alliance_posts_bp
    from gateway.routes_audit import bp as audit_bp
    from gateway.routes_auth import init_app as init_auth
    from gateway.routes_dashboard import bp as dashboard_bp
    from gateway.routes_dispatch import bp as dispatch_bp
    from gateway.routes_governance import bp as governance_bp
    from gateway.routes_issues import bp as issues_bp
    from gateway.routes_org import bp as org_bp
    from gateway.routes_portal import bp as portal_bp
    from gateway.routes_webhooks import bp as webhooks_bp

    app.register_blueprint(issues_bp)
    app.register_blueprint(dashboard_bp)  # the portal's dashboard figures
    app.register_blueprint(org_bp)
    app.register_blueprint(dispatch_bp)  # whistles, tasks, dispatch rules
    app.register_blueprint(webhooks_bp)
    app.register_blueprint(alliance_ledger_bp)  # alliance ledger: pledges, volunteer hours, community funds
    app.register_blueprint(governance_bp)
    app.register_blueprint(docs_bp)
    app.register_blueprint(audit_bp)
    app.register_blueprint(open311_bp)  # Open311 GeoReport v2 at /open311/v2
    app.register_blueprint(alliance_meetings_bp)  # joint meetings (共商共议共决)
    app.register_blueprint(alliance_posts_bp)  # alliance: standing posts (认领岗位)
    app.register_blueprint(alliance_activities_bp)  # alliance: co-building activities (参与共建)
    # ---- evaluation: verification (验单), gateway/routes_verification.py
    from gateway.routes_verification import bp as verification_bp

    app.register_blueprint(verification_bp)  # review rounds, on-site checks, verification rules
    # ---- end verification
    app.register_blueprint(portal_bp)  # the portal (single-page app) at /portal/
    # ---- evaluation: residents' and unit ratings (评单; gateway/routes_ratings.py)
    from gateway.routes_ratings import bp as ratings_bp

    app.register_blueprint(ratings_bp)
    # ---- evaluation: measures and the quarterly boards (issue 18, measures area)
    from gateway.routes_measures import bp as measures_bp

    app.register_blueprint(measures_bp)  # evaluation: measures, 四榜, weights, rebuild
    # ---- end evaluation measures
    # publications, staff and public (gateway/routes_publications.py)
    from gateway.routes_publications import bp as publications_bp

    app.register_blueprint(publications_bp)
    init_auth(app, settings)  # people's accounts and sessions: /api/v1/auth/*, /api/v1/users
    return app
