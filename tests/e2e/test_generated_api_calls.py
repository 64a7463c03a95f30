"""Generated calls to every operation of the HTTP API, as every role: schemathesis reads the OpenAPI document the
gateway serves and generates requests for each operation (schema-valid ones and ones broken on purpose), sent
with the token of each role the operation admits (the anonymous public without one) and of the roles it refuses.
Every answer is held to the document: never a 5xx; its status listed for the operation (the catch-all
`default` does not count); its content type and body as documented there. A bounded, derandomized run
(hypothesis' seed is fixed), a few thousand calls in all.

The calls stay inside one tenant (GENERATED_TENANT): its records are made by generated data, so nothing
another module relies on is touched. A tenant's settings (rules, weights, …) are only ever sent with a stale
If-Match, so a generated replacement is refused (412) however valid it is."""

from __future__ import annotations

import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import requests
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
)

from gateway.tokens import TOKEN_ROLES
from tests.conftest import System
from tests.e2e.test_malformed_input import bounded

GENERATED_TENANT = "qiujiadian"
POSITIVE = 3  # generated schema-valid calls per operation and admitted role
NEGATIVE = 4  # generated broken calls per operation (as the first admitted role)
REFUSED = 2  # generated calls per operation by roles it does not admit
# To reproduce a failure quickly: only the operations whose path matches this regular expression.
ONLY = re.compile(os.environ.get("HONGLING_GENERATED_PATHS", ""))
# Log-in attempts are limited per address (60 a minute, gateway/ratelimit.py), and later modules log in too.
LOGIN = "/api/v1/auth/login"
LOGIN_EXAMPLES = 4
# A tenant's settings: replaced as a whole, so a generated valid body would change how the tenant works.
SETTINGS_PATHS = frozenset(
    f"/api/v1/tenants/{{tenant}}/{p}"
    for p in (
        "alliance/timebank-rules",
        "classification-rules",
        "dispatch-rules",
        "evaluation/rating-settings",
        "evaluation/verification-rules",
        "evaluation/weights",
    )
)
STALE_ETAG = '"987654321"'


def documented_status(ctx: Any, response: Any, case: Any) -> None:
    """The answer's status is one the operation lists (the catch-all `default` aside: a 500 is never fine)."""
    listed = {str(code) for code in case.operation.responses.status_codes if str(code) != "default"}
    status = str(response.status_code)
    if status not in listed and f"{status[0]}XX" not in listed:
        raise AssertionError(f"{case.operation.label}: answered {status}, documented {sorted(listed)}")


CHECKS: list[Callable[..., Any]] = [
    not_a_server_error,
    documented_status,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]


def role_headers(system: System, role: str, tenant_scoped: bool) -> dict[str, str]:
    """The role's Authorization header (none for the anonymous public)."""
    if role == "public":
        return {}
    if tenant_scoped or role in ("member", "community_worker"):
        return system.auth(role, GENERATED_TENANT)
    return system.auth(role, "*")


def prepare(case: Any) -> None:
    """Keep the call in the generated tenant; a tenant's settings only with a stale version."""
    params = case.path_parameters or {}
    if params.get("tenant") in TENANTS:
        params["tenant"] = GENERATED_TENANT
    if case.operation.path in SETTINGS_PATHS and case.method.upper() == "PUT":
        case.headers = {**(case.headers or {}), "If-Match": STALE_ETAG}
    if case.headers:
        case.headers.pop("Authorization", None)


TENANTS: frozenset[str] = frozenset()


def describe(exc: BaseException) -> str:
    """A failure's text, with the failures a group holds (schemathesis reports each check's on its own)."""
    parts = [str(exc).strip()]
    if isinstance(exc, BaseExceptionGroup):
        parts += [describe(e) for e in exc.exceptions]
    return "\n".join(parts)


class Run:
    """Sends the cases and collects failures, one line per operation, mode and role."""

    def __init__(self, system: System) -> None:
        self.system = system
        self.failures: list[str] = []
        self.sent: Counter[str] = Counter()

    def send(self, case: Any, role: str, *, refused: bool = False) -> None:
        prepare(case)
        scoped = bool(case.operation.definition.raw.get("x-hongling-tenant-scoped"))
        headers = role_headers(self.system, role, scoped)
        resp = case.call(base_url=self.system.gateway, headers=headers, timeout=60)
        self.sent[str(resp.status_code)] += 1
        case.validate_response(resp, checks=CHECKS, headers=headers)
        if refused:
            assert resp.status_code in (401, 403, 404), (
                f"{role} is not admitted, yet: {resp.status_code} {resp.text[:300]}\n{case.as_curl_command()}"
            )

    def run(self, operation: Any, mode: GenerationMode, roles: list[str], examples: int, *, refused: bool) -> None:
        @given(case=operation.as_strategy(generation_mode=mode), role=st.sampled_from(roles))
        @settings(bounded(examples), report_multiple_bugs=False)
        def one(case: Any, role: str) -> None:
            self.send(case, role, refused=refused)

        try:
            one()
        except Unsatisfiable:  # nothing to break in a negative case (no parameters, no body)
            pass
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
            self.failures.append(f"{operation.label} ({mode.value}, {','.join(roles)}): {describe(exc)[:1500]}")


@pytest.fixture(scope="module")
def api(system: System) -> Any:
    global TENANTS
    spec = requests.get(f"{system.gateway}/api/v1/openapi.json", timeout=10).json()
    TENANTS = frozenset(spec["components"]["parameters"]["tenant"]["schema"]["enum"])
    return schemathesis.openapi.from_dict(spec)


@pytest.mark.timeout(1200)  # a few thousand calls: minutes on a busy machine (pyproject's 300 s is per test)
def test_every_operation_as_every_role_answers_as_documented_and_never_5xx(system: System, api: Any) -> None:
    results: Iterable[Any] = api.get_all_operations()
    operations = [r.ok() for r in results]
    assert len(operations) > 200
    run = Run(system)
    started = time.monotonic()
    for n, op in enumerate(operations, 1):
        if not ONLY.search(op.path):
            continue
        if n % 20 == 0:
            print(
                f"[generated] {n}/{len(operations)} operations, {sum(run.sent.values())} calls, "
                f"{time.monotonic() - started:.0f} s",
                file=sys.stderr,
            )
        admitted = [r for r in op.definition.raw.get("x-hongling-roles", []) if r in (*TOKEN_ROLES, "public")]
        others = [r for r in (*TOKEN_ROLES, "public") if r not in admitted]
        positive, negative = POSITIVE, NEGATIVE
        if op.path == LOGIN:
            admitted, positive, negative = ["public"], LOGIN_EXAMPLES, LOGIN_EXAMPLES
        for role in admitted:
            run.run(op, GenerationMode.POSITIVE, [role], positive, refused=False)
        if admitted:
            first = "subdistrict_admin" if "subdistrict_admin" in admitted else admitted[0]
            run.run(op, GenerationMode.NEGATIVE, [first], negative, refused=False)
        if others:
            run.run(op, GenerationMode.POSITIVE, others, REFUSED, refused=True)
    total = sum(run.sent.values())
    print(f"\n{total} generated calls; answers by status: {dict(sorted(run.sent.items()))}")
    if not ONLY.pattern:
        assert total > 2000
    assert not run.failures, f"{len(run.failures)} failing:\n\n" + "\n\n".join(run.failures)
