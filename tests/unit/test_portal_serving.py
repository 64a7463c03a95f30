"""How the gateway serves the portal's files (gateway/routes_portal.py), on a stand-in build: the app's pages,
its gzipped twins, the service worker never cached, and a configured map tile service (meta tags, CSP)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any, cast

import pytest
from flask.testing import FlaskClient
from pydantic import ValidationError

from gateway.app import create_app
from gateway.clients import Clients
from services.common.settings import Settings
from tests.unit.test_gateway_policy import NoNetwork

INDEX = '<!DOCTYPE html><html lang="zh-CN"><head><title>红领益家</title></head><body><div id="app"></div></body></html>'


@pytest.fixture
def build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "dist"
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text(INDEX, encoding="utf-8")
    (root / "assets" / "app-abc123.js").write_text("console.log('红领')", encoding="utf-8")
    (root / "assets" / "app-abc123.js.gz").write_bytes(gzip.compress("console.log('红领')".encode()))
    (root / "sw.js").write_text("self.addEventListener('fetch', () => {})", encoding="utf-8")
    monkeypatch.setenv("HONGLING_PORTAL_DIR", str(root))
    return root


def client(tmp_path: Path, **settings: Any) -> FlaskClient:
    app = create_app(
        Settings(api_tokens_file=str(tmp_path / "tokens.toml"), **settings), clients=cast(Clients, NoNetwork())
    )
    return app.test_client()


def test_every_page_of_the_app_is_its_index_never_cached(build: Path, tmp_path: Path) -> None:
    c = client(tmp_path)
    for path in ("/portal/", "/portal/taiqian/issues/abc", "/portal/login"):
        resp = c.get(path)
        assert resp.status_code == 200 and '<div id="app">' in resp.get_data(as_text=True)
        assert resp.headers["Cache-Control"] == "no-cache"
        assert "frame-ancestors 'none'" in resp.headers["Content-Security-Policy"]
    assert 'name="hongling-map-tiles"' not in c.get("/portal/").get_data(as_text=True)
    assert c.get("/portal/assets/missing.js").status_code == 404
    assert c.get("/portal/assets/../index.html").status_code == 404
    assert c.get("/", follow_redirects=False).headers["Location"] == "/portal/"


def test_assets_are_immutable_and_gzipped_for_browsers_that_accept_it(build: Path, tmp_path: Path) -> None:
    c = client(tmp_path)
    zipped = c.get("/portal/assets/app-abc123.js", headers={"Accept-Encoding": "gzip, br"})
    assert zipped.headers["Content-Encoding"] == "gzip" and zipped.headers["Vary"] == "Accept-Encoding"
    assert zipped.mimetype == "text/javascript" and "immutable" in zipped.headers["Cache-Control"]
    assert gzip.decompress(zipped.get_data()).decode() == "console.log('红领')"
    plain = c.get("/portal/assets/app-abc123.js")
    assert "Content-Encoding" not in plain.headers and plain.get_data(as_text=True) == "console.log('红领')"
    assert c.get("/portal/sw.js").headers["Cache-Control"] == "no-cache"


def test_a_configured_tile_service_reaches_the_map_and_the_policy(build: Path, tmp_path: Path) -> None:
    url = "https://tiles.example.org/{z}/{x}/{y}.png"
    c = client(tmp_path, map_tile_url=url, map_tile_attribution="© 天地图 <测试>")
    resp = c.get("/portal/")
    html = resp.get_data(as_text=True)
    assert f'<meta name="hongling-map-tiles" content="{url}">' in html
    assert "&lt;测试&gt;" in html  # escaped, never markup
    assert "img-src 'self' data: blob: https://tiles.example.org;" in resp.headers["Content-Security-Policy"]


@pytest.mark.parametrize(
    "url", ["http://tiles.example.org/{z}/{x}/{y}.png", "https://tiles.example.org/tile.png", "ftp://x/{z}/{x}/{y}"]
)
def test_a_tile_url_must_be_https_with_its_placeholders(tmp_path: Path, url: str) -> None:
    with pytest.raises(ValidationError, match="map_tile_url"):
        Settings(api_tokens_file=str(tmp_path / "t.toml"), map_tile_url=url)
    Settings(api_tokens_file=str(tmp_path / "t.toml"), map_tile_url="http://127.0.0.1:8080/{z}/{x}/{y}.png")
