"""The reporter's routes at the gateway (gateway/routes_ratings.py), without the services: the follow-up code
travels in a header only, and checks of it are limited per client address (HONGLING_RATE_FOLLOW_PER_MINUTE)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, cast

import grpc
from flask.testing import FlaskClient

from gateway.app import create_app
from gateway.clients import Clients
from services.common.settings import Settings

ISSUE = "/api/v1/tenants/taiqian/issues/i-1"
CODE = "ABCDE-FGHJK-MNPQR-STVWX"


class NotReporter(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.PERMISSION_DENIED

    def details(self) -> str:
        return "查询码不正确 (the follow-up code does not match this issue)"

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("x-hongling-error-reason", "not_reporter"),)


class Channel:
    """Every call of the evaluation service answers PERMISSION_DENIED (as a wrong code does); counts them."""

    def __init__(self) -> None:
        self.calls = 0

    def unary_unary(self, *args: Any, **kwargs: Any) -> Any:
        def call(request: Any, **kw: Any) -> Any:
            self.calls += 1
            raise NotReporter()

        return call


class FakeClients:
    def __init__(self) -> None:
        self.channels = {"evaluation": Channel()}

    def health(self, timeout: float = 1.0) -> dict[str, str]:
        return {}


def client(tmp_path: Path, per_minute: int = 3) -> tuple[FlaskClient, Channel]:
    clients = FakeClients()
    settings = Settings(
        api_tokens_file=str(tmp_path / "api-tokens.toml"),
        rate_ip_per_second=1000,
        rate_ip_burst=1000,
        rate_follow_per_minute=per_minute,
    )
    return create_app(settings, clients=cast(Clients, clients)).test_client(), clients.channels["evaluation"]


def test_code_checks_are_limited_per_address(tmp_path: Path) -> None:
    http, channel = client(tmp_path)
    answers = [http.get(f"{ISSUE}/follow", headers={"X-Follow-Code": CODE}) for _ in range(3)]
    assert [a.status_code for a in answers] == [403, 403, 403]
    assert answers[0].json["error"]["code"] == "not_reporter"
    limited = http.post(f"{ISSUE}/rating", json={"score": 5}, headers={"X-Follow-Code": CODE})
    assert limited.status_code == 429 and limited.json["error"]["code"] == "rate_limited"
    assert "查询过于频繁" in limited.json["error"]["message"] and int(limited.headers["Retry-After"]) >= 1
    assert channel.calls == 3  # the fourth guess never reached the service


def test_a_code_that_cannot_be_one_is_refused_before_any_check(tmp_path: Path) -> None:
    http, channel = client(tmp_path)
    bad = http.get(f"{ISSUE}/follow", headers={"X-Follow-Code": "x" * 80})
    assert bad.status_code == 400 and bad.json["error"]["field"] == "X-Follow-Code"
    assert channel.calls == 0


def test_a_rating_body_is_checked_for_its_shape(tmp_path: Path) -> None:
    http, _ = client(tmp_path, per_minute=100)
    extra = http.post(f"{ISSUE}/rating", json={"score": 3, "stars": 3}, headers={"X-Follow-Code": CODE})
    assert extra.status_code == 400 and extra.json["error"]["field"] == "stars"
    low = http.post(f"{ISSUE}/rating", json={"score": 0}, headers={"X-Follow-Code": CODE})
    assert low.status_code == 400 and low.json["error"]["field"] == "score"
