"""A community worker's community (社区范围) at the gateway: checking that a credential's community exists, and
holding each request to it as gateway/policy.py's table says.

A community worker works for one community of one tenant; its API token or account carries it and the
principal the gateway forwards carries it to the services, which check it again (services/common/
community.py: the same rules, the same answers). Here:

- `list_filter`: a list or count is limited to the caller's community; naming another is 403
  `community_out_of_scope` (the policy hook refuses a `community_id` query naming another before the view
  runs; the views call this for the value they send on).
- `check_record`: a route that names a record (its path's issue, task, call, org record or grant, or the
  issues in a call's body) is looked up before the view runs, and a record of another community is 404
  `not_found` with the words a missing one gets, so the answer never confirms that it exists (a read of
  the record costs one more call, for community workers only). A new record placed in another community is
  403 `community_out_of_scope`; where the community is derived by the service (a compound from its grid, a
  list entry from its owner, a spreadsheet's rows) the org service refuses it the same way.
- `Communities`: whether a community exists in a tenant's org data, asked of the org service when an
  account or token is given a community (routes_auth, `python -m gateway.users|tokens`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import grpc
from flask import g, request
from hongling.dispatch.v1 import dispatch_pb2
from hongling.intake.v1 import intake_pb2
from hongling.org.v1 import org_pb2, org_pb2_grpc

from gateway.calls import clients, tenant_call
from gateway.errors import ApiError
from services.common import community as scope
from services.common import context
from services.common.errors import PermissionDenied
from services.common.grpc_client import make_channel
from services.common.principal import Principal
from services.common.settings import Settings

GATEWAY_SUB = "gateway"
ORG_SERVICE = "hongling.org.v1.OrgService"
REQUIRED = "community_required"
MAX_NAMED_ISSUES = 100  # the intake service's ids limit; a call names at most 50 (routes_dispatch.BlowWhistleIn)


# ---------------------------------------------------------------- does the community exist?


class Communities(Protocol):
    def exists(self, tenant: str, community_id: str) -> bool:
        """Whether the tenant's org data has this community; grpc.RpcError when the org service cannot say."""
        ...


class OrgCommunities:
    """Asks the org service, as the gateway itself (a "service" principal of the one tenant): whoever
    manages accounts may not read org data (ops), but the community must still be checked."""

    def __init__(self, org: org_pb2_grpc.OrgServiceStub) -> None:
        self.org = org

    def exists(self, tenant: str, community_id: str) -> bool:
        me = Principal(sub=GATEWAY_SUB, role="service", tenants=(tenant,))
        with context.bound(tenant=tenant, principal=me):
            try:
                self.org.GetCommunity(org_pb2.GetRequest(id=community_id))
            except grpc.RpcError as exc:
                if exc.code() == grpc.StatusCode.NOT_FOUND:
                    return False
                raise
        return True


def cli_communities(settings: Settings) -> tuple[OrgCommunities, grpc.Channel]:
    """For the command-line tools: the org service of the running system, and its channel to close."""
    channel = make_channel(
        settings.address("org"),
        [ORG_SERVICE],
        secret=settings.principal_secret,
        caller="gateway-cli",
        default_timeout=settings.call_timeout_seconds,
    )
    return OrgCommunities(org_pb2_grpc.OrgServiceStub(channel)), channel


def missing_message(tenant: str, community_id: str) -> str:
    return f"community {community_id!r} does not exist in {tenant} (该街道/镇没有这个社区)"


def required_message(kind: str, name: str) -> str:
    """Why a community worker's credential without a community is refused, and who fixes it how."""
    if kind == "api_token":
        fix = f"python -m gateway.tokens set-community --id {name} --community <社区编号>"
    else:
        fix = f"python -m gateway.users set-community --username {name} --community <社区编号>"
    return (
        f"this community worker's {'API token' if kind == 'api_token' else 'account'} has no community yet: an "
        f"administrator must set the community it works for (`{fix}`, or for an account PUT "
        f"/api/v1/users/{{username}}/role with community_id) (社区工作者尚未绑定所属社区，请联系管理员设置)"
    )


# ---------------------------------------------------------------- lists


def _caller() -> Principal | None:
    principal: Principal | None = g.get("principal")
    return principal


def out_of_scope(p: Principal, asked: str, field: str = "community_id") -> ApiError:
    return ApiError(403, scope.REASON, scope.out_of_scope_message(p, asked), field=field)


def list_filter(asked: str) -> str:
    """The community_id a list or count sends on: the caller's own for a community worker (another: 403),
    else what was asked ("" = the whole tenant)."""
    p = _caller()
    try:
        return scope.list_filter(asked, p) if p is not None else asked
    except PermissionDenied as exc:
        raise ApiError(403, scope.REASON, exc.message, field="community_id") from None


def sees(community_id: str) -> bool:
    """Whether the caller may see a record of this community (everyone but another community's worker)."""
    p = _caller()
    return p is None or p.sees_community(community_id)


# ---------------------------------------------------------------- records


@dataclass(frozen=True)
class Record:
    kind: str  # issue, task, call, grant or an org entity (person, member_unit, ...): the not-found words
    ident: str
    community: str | None  # its community; "" none; None: a tenant-level record (not one community's)


Resolver = Callable[[str | None, Mapping[str, str]], Iterable[Record]]


def not_found(record: Record) -> ApiError:
    if record.kind == "grant":  # the governance routes' own words (gateway/routes_governance.py _not_found)
        return ApiError(404, "not_found", f"no grant {record.ident!r} that you may see (未找到该授权)", field="id")
    return ApiError(404, "not_found", scope.not_found_message(record.kind, record.ident), field="id")


def _tenant(tenant: str | None) -> str:
    if tenant is None:
        raise ApiError(403, "forbidden", "this endpoint is misconfigured (default deny) (拒绝访问)")
    return tenant


def _issue(tenant: str | None, params: Mapping[str, str]) -> Iterable[Record]:
    ident = params["issue_id"]
    with tenant_call(_tenant(tenant)):
        issue = clients().intake.GetIssue(intake_pb2.GetIssueRequest(id=ident))
    return [Record("issue", ident, issue.place.community_id)]


def _named_issues(tenant: str | None, _params: Mapping[str, str]) -> Iterable[Record]:
    """The issues a call's body names (issue_ids), read as the caller: those it may not see are missing."""
    body = request.get_json(silent=True) if request.is_json else None
    raw = body.get("issue_ids") if isinstance(body, dict) else None
    if not isinstance(raw, list) or not all(isinstance(i, str) for i in raw):
        return []  # the view answers the malformed body
    ids = list(dict.fromkeys(i.strip() for i in raw if i.strip()))
    if not ids or len(ids) > MAX_NAMED_ISSUES:
        return []
    with tenant_call(_tenant(tenant)):
        found = clients().intake.ListIssues(intake_pb2.ListIssuesRequest(ids=ids, page_size=len(ids)))
    places = {i.id: i.place.community_id for i in found.issues}
    return [Record("issue", i, places.get(i, "")) for i in ids]


def _task(tenant: str | None, params: Mapping[str, str]) -> Iterable[Record]:
    ident = params["task_id"]
    with tenant_call(_tenant(tenant)):
        task = clients().dispatch.GetTask(dispatch_pb2.GetTaskRequest(id=ident))
    return [Record("task", ident, task.community_id)]


def _call(tenant: str | None, params: Mapping[str, str]) -> Iterable[Record]:
    ident = params["whistle_id"]
    with tenant_call(_tenant(tenant)):
        whistle = clients().dispatch.GetWhistle(dispatch_pb2.GetWhistleRequest(id=ident))
    return [Record("call", ident, whistle.community_id)]


def entity_name(message_name: str) -> str:
    """The org service's name for an entity (its not-found words): MemberUnit -> member_unit."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", message_name).lower()


def _org(tenant: str | None, params: Mapping[str, str]) -> Iterable[Record]:
    """The org record the path names (read, update, delete), or for a create the community the body places
    it in ("" when the body names none: the org service derives it from its parent and checks it)."""
    from gateway.routes_org import collection_of, community_of

    c = collection_of(params["collection"])
    kind = entity_name(c.name)
    fields = c.message.DESCRIPTOR.fields_by_name
    tenant_level = c.slug != "communities" and "community_id" not in fields
    item = params.get("item_id")
    if item is None:  # a new record
        body = request.get_json(silent=True) if request.is_json else None
        named = body.get("community_id") if isinstance(body, dict) else None
        if c.slug == "communities" or tenant_level:
            return [Record(kind, "", None)]
        return [Record(kind, "", named if isinstance(named, str) else "")]
    with tenant_call(_tenant(tenant)):
        found = c.rpc("Get")(org_pb2.GetRequest(id=item))
    return [Record(kind, item, None if tenant_level else community_of(c, found))]


def _grant(_tenant_slug: str | None, params: Mapping[str, str]) -> Iterable[Record]:
    from gateway.governance.store import current_store

    ident = params["item_id"]
    doc: dict[str, Any] | None = current_store().grant(ident)
    if doc is None:
        raise not_found(Record("grant", ident, ""))
    return [Record("grant", ident, str(doc.get("community_id") or ""))]


RESOLVERS: dict[str, Resolver] = {
    "issue": _issue,
    "issues": _named_issues,
    "task": _task,
    "call": _call,
    "org": _org,
    "grant": _grant,
}


def tenant_level_refusal(p: Principal, record: Record) -> ApiError:
    if record.kind == "community":
        what = "a new community is set up by subdistrict admins (新建社区须由街道管理员办理)"
    else:
        what = (
            f"{record.kind} records are the whole tenant's: subdistrict admins change them "
            "(本街道/镇的清单由街道管理员维护)"
        )
    return ApiError(
        403,
        scope.REASON,
        f"{p.sub!r} works for community {p.community!r}: {what} (无权访问该社区数据)",
        field="collection",
    )


def check_record(p: Principal, record: str, new: bool, tenant: str | None, params: Mapping[str, str]) -> None:
    """Refuse a community worker's request for a record outside its community (see the module's docstring):
    `record` names the resolver, `new` says the request places a new record rather than naming one."""
    if p.community is None:
        return
    writes = request.method not in ("GET", "HEAD")
    for found in RESOLVERS[record](tenant, params):
        if found.community is None:  # a tenant-level record: read by all who read org data, changed by none here
            if new or writes:
                raise tenant_level_refusal(p, found)
        elif new:
            if found.community and found.community != p.community:
                raise out_of_scope(p, found.community)
        elif not p.sees_community(found.community):
            raise not_found(found)
