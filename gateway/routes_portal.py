"""The portal (gateway/portal/, a Vue single-page app) served by the gateway: /portal/ and its files.

`make up` and `make test` build it with npm from its lock file into gateway/portal/dist (HONGLING_PORTAL_DIR
moves it). Everything the browser loads comes from here: no CDN, no font or map service. The app talks only
to this gateway's /api/v1 with the person's session token, which it keeps in memory.

- /portal/assets/<file>: the build's content-hashed files, cached for a year (immutable), gzipped by the build
  (<file>.gz) and sent so to browsers that accept it;
- /portal/<file> at the top of the build (favicon, …): cached for a day; the service worker sw.js never;
- any other /portal/… path is a page of the app (its router decides), answered with index.html, never cached.

Every answer carries a Content-Security-Policy allowing only this origin's scripts, styles, images and API
(ECharts draws on canvas; Element Plus sets styles through the CSSOM, which CSP does not restrict), and
forbids framing. Open to everyone (gateway/policy.py): the data behind each page needs the person's token.
"""

from __future__ import annotations

import mimetypes
import os
from pathlib import Path

from flask import Blueprint, Response, abort, redirect, request, send_from_directory

from gateway.errors import ApiError

bp = Blueprint("portal", __name__)
DEFAULT_DIR = Path(__file__).resolve().parent / "portal" / "dist"
YEAR = 365 * 24 * 3600
DAY = 24 * 3600
SERVICE_WORKER = "sw.js"  # keeps the app opening offline (gateway/portal/public/sw.js)
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def portal_dir() -> Path:
    return Path(os.environ.get("HONGLING_PORTAL_DIR") or DEFAULT_DIR)


def _secure(resp: Response) -> Response:
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    return resp


def _send(folder: Path, name: str, *, max_age: int) -> Response:
    """The file, or its gzipped twin (name.gz, made by the build) to a browser that accepts gzip."""
    zipped = folder / f"{name}.gz"
    if zipped.is_file() and "gzip" in request.headers.get("Accept-Encoding", ""):
        resp = send_from_directory(folder, f"{name}.gz", max_age=max_age, mimetype=_mimetype(name))
        resp.headers["Content-Encoding"] = "gzip"
        resp.headers.pop("Content-Disposition", None)
    else:
        resp = send_from_directory(folder, name, max_age=max_age)
    resp.headers["Vary"] = "Accept-Encoding"
    return resp


def _mimetype(name: str) -> str:
    guessed, _ = mimetypes.guess_type(name)
    return guessed or "application/octet-stream"


def _index() -> Response:
    root = portal_dir()
    if not (root / "index.html").is_file():
        raise ApiError(
            503,
            "portal_not_built",
            f"the portal is not built: run `make portal` (npm ci + vite build into {root}) (门户尚未构建)",
        )
    resp = send_from_directory(root, "index.html", max_age=0)
    resp.headers["Cache-Control"] = "no-cache"
    return _secure(resp)


@bp.get("/")
def root() -> Response:
    """门户首页 The portal's address: redirects to /portal/"""
    return redirect("/portal/", code=302)  # type: ignore[return-value]


@bp.get("/portal/")
@bp.get("/portal/<path:page>")
def page(page: str = "") -> Response:
    """门户页面 A page of the portal (the single-page app), or one of its files"""
    root = portal_dir()
    if page.startswith("assets/"):
        name = page.removeprefix("assets/")
        if "/" in name or not (root / "assets" / name).is_file():
            abort(404)
        resp = _send(root / "assets", name, max_age=YEAR)
        resp.headers["Cache-Control"] = f"public, max-age={YEAR}, immutable"
        return _secure(resp)
    if page and "/" not in page and "." in page and (root / page).is_file():
        resp = _send(root, page, max_age=0 if page == SERVICE_WORKER else DAY)
        if page == SERVICE_WORKER:
            resp.headers["Cache-Control"] = "no-cache"  # a new build's worker is found at once
        return _secure(resp)
    return _index()
