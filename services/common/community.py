"""Community scope (社区范围): holding a community worker's calls to the one community its principal carries.

A community worker works for one community (Principal.community). The gateway and every service that
keeps community data apply the same two rules, with the same answers, so neither trusts the other alone:

- Naming a community: a list or count filtered by another community, or a new record placed in another
  community, is PERMISSION_DENIED / HTTP 403 `community_out_of_scope` (`out_of_scope`). A list that names
  no community is limited to the caller's own (`list_filter`).
- Naming a record by its id: a record of another community is NOT_FOUND / HTTP 404 `not_found` with the
  very message a record that does not exist gets (`not_found_message`). The id alone never confirms that
  another community's issue, task or person exists; the caller can tell nothing from the answer that it
  could not tell from a wrong id.

A principal without a community (every other role, and the services' own) is not held here.
"""

from __future__ import annotations

from services.common.context import current_principal
from services.common.errors import PermissionDenied
from services.common.principal import Principal

REASON = "community_out_of_scope"

# What each kind of record answers when its id is not found in the tenant: the services raise NotFound with
# these, and the gateway answers a record of another community with the same words.
_NOT_FOUND = {
    "issue": "issue {id!r} not found in this tenant (未找到该事项)",
    "task": "task {id!r} not found in this tenant (未找到该任务)",
    "call": "call {id!r} not found in this tenant (未找到该集结号)",
}


def not_found_message(kind: str, ident: str) -> str:
    """The NOT_FOUND message of a record: issue, task, call (a whistle), or an org entity's name (person,
    grid, member_unit, ...)."""
    template = _NOT_FOUND.get(kind, kind + " {id!r} not found in this tenant (未找到)")
    return template.format(id=ident)


def out_of_scope_message(principal: Principal, asked: str) -> str:
    what = f"community {asked!r}" if asked else "records of no community"
    return (
        f"{principal.sub!r} ({principal.role}) works for community {principal.community!r}, not {what} "
        "(无权访问该社区数据)"
    )


def out_of_scope(principal: Principal, asked: str, field: str = "community_id") -> PermissionDenied:
    return PermissionDenied(out_of_scope_message(principal, asked), field=field, reason=REASON)


def caller() -> Principal | None:
    return current_principal.get()


def list_filter(asked: str, principal: Principal | None = None) -> str:
    """The community a list or count is limited to: for a community-scoped caller its own (naming another is
    PermissionDenied `community_out_of_scope`), for anyone else what was asked ("" = the whole tenant)."""
    p = principal if principal is not None else caller()
    if p is None or p.community is None:
        return asked
    if asked and asked != p.community:
        raise out_of_scope(p, asked)
    return p.community


def sees(community_id: str | None, principal: Principal | None = None) -> bool:
    """Whether the caller may see a record of this community (a record of none only unscoped callers)."""
    p = principal if principal is not None else caller()
    return p is None or p.sees_community(community_id or "")


def require_placed_in_scope(community_id: str | None, field: str = "community_id") -> None:
    """A new or changed record is to be in this community: PermissionDenied unless the caller may act there."""
    p = caller()
    if p is not None and not p.sees_community(community_id or ""):
        raise out_of_scope(p, community_id or "", field)
