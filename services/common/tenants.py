"""The tenant registry: the 7 subdistricts/towns, read once from tenants.toml."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from services.common.errors import UnknownTenant

TENANTS_FILE = Path(__file__).with_name("tenants.toml")


@dataclass(frozen=True)
class Tenant:
    slug: str
    name_zh: str
    name_en: str
    kind: str


@cache
def all_tenants() -> tuple[Tenant, ...]:
    data = tomllib.loads(TENANTS_FILE.read_text(encoding="utf-8"))
    tenants = tuple(Tenant(t["slug"], t["name_zh"], t["name_en"], t["kind"]) for t in data["tenant"])
    slugs = [t.slug for t in tenants]
    if len(set(slugs)) != len(slugs):
        raise ValueError(f"{TENANTS_FILE}: duplicate tenant slug")
    return tenants


def tenant_slugs() -> tuple[str, ...]:
    return tuple(t.slug for t in all_tenants())


def get_tenant(slug: str) -> Tenant:
    """The tenant with this slug, or UnknownTenant naming the valid ones."""
    for t in all_tenants():
        if t.slug == slug:
            return t
    raise UnknownTenant(
        f"unknown tenant {slug!r} (未知街道/镇); use one of: {', '.join(tenant_slugs())}",
        field="tenant",
    )
