"""The names helpers appear by in publications: the name a member unit or person agreed to show (org's
`public_name`), looked up from org over gRPC as the publication service and cached ten minutes.

- a member unit: its public_name, else its registered name (an organisation's name is public);
- a volunteer team: its registered name;
- a person: their public_name, else surname and a mask ("张**"): a person's full name appears in a
  publication only when they agreed to it;
- a subject org does not know (removed, or org unreachable): "（未公开）" for a person, the id otherwise —
  never a guess at a name.

A publication is built after its period closed, so a name changed since then shows as it is now: the
content records the names at the time it was built, and a later correction carries the new one.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable

import grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.common.context import require_tenant
from services.common.grpc_client import LazyStub, peer_call

CALLER = "publication"
TTL_SECONDS = 600.0
UNKNOWN_PERSON = "（未公开）"
_org = LazyStub(org_pb2_grpc.OrgServiceStub, "org", "hongling.org.v1.OrgService", CALLER)
_cache: dict[tuple[str, str], tuple[float, str]] = {}
_lock = threading.Lock()


def mask(name: str) -> str:
    """A person's name as published without their consent: the first character and two stars."""
    name = name.strip()
    return f"{name[0]}**" if name else UNKNOWN_PERSON


def shown_name(kind: str, public_name: str, name_zh: str) -> str:
    """The name to publish, from what org holds (pure: the rule above)."""
    if public_name.strip():
        return public_name.strip()
    if kind == "person":
        return mask(name_zh)
    return name_zh.strip()


def _look_up(kind: str, ident: str) -> str | None:
    methods: dict[str, Callable[[org_pb2.GetRequest], object]] = {
        "member_unit": _org().GetMemberUnit,
        "person": _org().GetPerson,
        "team": _org().GetVolunteerTeam,
    }
    method = methods.get(kind)
    if method is None:
        return None
    try:
        found = peer_call(lambda: method(org_pb2.GetRequest(id=ident)), CALLER)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    return shown_name(kind, str(getattr(found, "public_name", "")), str(getattr(found, "name_zh", "")))


def public_names(tenant: str, subjects: Iterable[str]) -> dict[str, str]:
    """subject ("member_unit:<id>", "person:<id>", "team:<id>") -> the name to publish. The call's tenant
    must be `tenant` (the look-ups run in it)."""
    if tenant != require_tenant():
        raise ValueError(f"names of {tenant!r} asked in a call of {require_tenant()!r}")
    out: dict[str, str] = {}
    now = time.monotonic()
    for subject in subjects:
        with _lock:
            hit = _cache.get((tenant, subject))
        if hit is not None and now - hit[0] < TTL_SECONDS:
            out[subject] = hit[1]
            continue
        kind, _, ident = subject.partition(":")
        name = _look_up(kind, ident)
        if name is None:
            name = UNKNOWN_PERSON if kind == "person" else ident
        out[subject] = name
        with _lock:
            _cache[(tenant, subject)] = (now, name)
    return out
