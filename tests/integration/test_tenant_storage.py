"""Per-tenant databases on the real FerretDB: isolation holds by construction."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import mongoengine as me
import pytest
from pymongo import MongoClient

from services.common import context, mongo
from services.common.settings import Settings
from tests.conftest import unique


class Note(mongo.TenantDocument):
    meta: ClassVar[dict[str, Any]] = {"collection": "notes", "indexes": [{"fields": ["code"], "unique": True}]}
    id = me.StringField(primary_key=True)
    code = me.StringField(required=True)
    text = me.StringField()


@pytest.fixture(scope="module")
def itest_mongo(infra: Settings) -> Iterator[None]:
    mongo.init("itest", infra.mongo_uri)
    yield


def test_documents_land_in_the_calling_tenants_database(itest_mongo: None, mongo_client: MongoClient[Any]) -> None:
    nid = unique("note")
    with context.bound(tenant="taiqian"):
        Note(id=nid, code=nid, text="嘉德社区").save(force_insert=True)
        assert Note.objects(id=nid).first().text == "嘉德社区"
    with context.bound(tenant="daimiao"):
        assert Note.objects(id=nid).first() is None
        assert Note.objects.count() == 0 or all(n.id != nid for n in Note.objects)
    assert mongo_client["hl_itest_taiqian"]["notes"].find_one({"_id": nid})["text"] == "嘉德社区"
    assert mongo_client["hl_itest_daimiao"]["notes"].find_one({"_id": nid}) is None


def test_no_tenant_bound_means_no_data_access(itest_mongo: None) -> None:
    with pytest.raises(RuntimeError, match="no tenant bound"):
        Note.objects.first()


def test_unique_index_is_created_per_tenant(itest_mongo: None) -> None:
    code = unique("code")
    with context.bound(tenant="caiyuan"):
        Note(id=unique(), code=code).save(force_insert=True)
        with pytest.raises(me.NotUniqueError):
            Note(id=unique(), code=code).save(force_insert=True)
    with context.bound(tenant="shanggao"):
        Note(id=unique(), code=code).save(force_insert=True)  # same code, other tenant: allowed
