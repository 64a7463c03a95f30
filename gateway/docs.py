"""The API's own description: /api/v1/openapi.json, the docs page /api/docs, and the event bus's and the
webhooks' AsyncAPI 3.0 document /api/v1/asyncapi.json (gateway/asyncapi.py).

The OpenAPI document is built from the code at the first request (gateway/openapi.py) and kept (so is the
AsyncAPI one, from the event protos, the topics and the webhook code): Flask
allows no new routes once an app has served a request, so it cannot go stale. The docs page is Swagger
UI from the swagger-ui-bundle-v2 wheel (upstream swagger-ui-dist 5.x, which renders OpenAPI 3.1; the
`swagger_ui_bundle` module it installs), its assets served from here under /api/docs/… so a browser
needs no CDN. Everything here is open to everyone (gateway/policy.py).
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Blueprint, Response, abort, current_app, request, send_from_directory, url_for
from markupsafe import escape
from swagger_ui_bundle import swagger_ui_path

from gateway.asyncapi import build_asyncapi
from gateway.openapi import build_spec

bp = Blueprint("docs", __name__)
ASSETS_DIR = Path(str(swagger_ui_path))
# The files the page loads (and the source maps a browser's developer tools ask for); nothing else.
ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui.css.map",
        "swagger-ui-bundle.js",
        "swagger-ui-bundle.js.map",
        "favicon-16x16.png",
        "favicon-32x32.png",
    }
)
ASSET_MAX_AGE = 24 * 3600
PAGE = """<!DOCTYPE html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>红领益家 Hongling API 接口文档</title>
<link rel="stylesheet" href="{css}">
<link rel="icon" type="image/png" href="{icon}" sizes="32x32">
</head>
<body>
<noscript>本页需要JavaScript。The OpenAPI document itself: <a href="{spec}">{spec}</a></noscript>
<div id="swagger-ui"></div>
<script src="{bundle}"></script>
<script>{init}</script>
</body>
</html>
"""


def _json_document(key: str, build: Callable[[], Any]) -> Response:
    """A document built at its first request and kept in the app (key), served with an ETag: 304 when the
    request's If-None-Match names this version."""
    cached: bytes | None = current_app.extensions.get(key)
    if cached is None:
        cached = json.dumps(build(), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        current_app.extensions[key] = cached
    resp = Response(cached, mimetype="application/json")
    resp.headers["Cache-Control"] = "no-cache"
    resp.add_etag()
    resp.make_conditional(request)
    return resp


@bp.get("/api/v1/openapi.json")
def openapi_json() -> Response:
    """OpenAPI 3.1 文档 This API's OpenAPI 3.1 document, built from the gateway's code

    Every /api/v1 route with its parameters, request and response schemas, the roles that may call it
    and the error responses. Cached per gateway process; conditional GET with If-None-Match works.
    """
    return _json_document("hongling.openapi", lambda: build_spec(current_app))


@bp.get("/api/v1/asyncapi.json")
def asyncapi_json() -> Response:
    """AsyncAPI 3.0 文档 The events' and webhooks' AsyncAPI 3.0 document, built from the event protos

    Every Kafka topic (a channel each) and every event: its CloudEvents attributes, the protobuf payload and
    the JSON Schema of its JSON rendering, the record key, ordering and delivery guarantees; the webhook
    deliveries with their Standard Webhooks signature headers and retries. Cached per gateway process;
    conditional GET with If-None-Match works.
    """
    return _json_document("hongling.asyncapi", lambda: build_asyncapi(current_app.extensions.get("hongling.settings")))


@bp.get("/api/docs")
def docs_page() -> Response:
    """接口文档页 The docs page (Swagger UI) for /api/v1/openapi.json"""
    spec = url_for("docs.openapi_json")
    init = (
        "window.onload = function () { window.ui = SwaggerUIBundle({"
        f"url: {json.dumps(spec)}, dom_id: '#swagger-ui', deepLinking: true, validatorUrl: null, "
        "presets: [SwaggerUIBundle.presets.apis], layout: 'BaseLayout', persistAuthorization: false, "
        "displayOperationId: false, defaultModelsExpandDepth: 0}); };"
    )
    html = PAGE.format(
        css=escape(url_for("docs.docs_asset", asset="swagger-ui.css")),
        icon=escape(url_for("docs.docs_asset", asset="favicon-32x32.png")),
        bundle=escape(url_for("docs.docs_asset", asset="swagger-ui-bundle.js")),
        spec=escape(spec),
        init=init,
    )
    digest = base64.b64encode(hashlib.sha256(init.encode("utf-8")).digest()).decode("ascii")
    resp = Response(html, mimetype="text/html")
    resp.headers["Content-Security-Policy"] = (
        f"default-src 'self'; script-src 'self' 'sha256-{digest}'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
    )
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp


@bp.get("/api/docs/<asset>")
def docs_asset(asset: str) -> Response:
    """接口文档页的静态文件 A static file of the docs page (Swagger UI's CSS, script, icons)"""
    if asset not in ASSETS:
        abort(404)
    resp = send_from_directory(ASSETS_DIR, asset, max_age=ASSET_MAX_AGE)
    resp.headers["X-Content-Type-Options"] = "nosniff"
    return resp
