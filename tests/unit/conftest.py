"""Fixtures for unit tests of gateway routes: the app over a module's own fake service clients.

A module using them defines a `fake` fixture (its FakeClients); `app` builds the gateway around it with a
token file of its own, `client` is Flask's test client of that app."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.clients import Clients
from services.common.settings import Settings


@pytest.fixture
def tokens(tmp_path: Path) -> Path:
    return tmp_path / "api-tokens.toml"


@pytest.fixture
def app(tokens: Path, fake: Any) -> Flask:
    return create_app(Settings(api_tokens_file=str(tokens)), clients=cast(Clients, fake))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
