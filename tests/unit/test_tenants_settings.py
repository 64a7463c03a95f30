import pytest

from services.common.errors import UnknownTenant
from services.common.settings import Settings, describe_errors
from services.common.tenants import all_tenants, get_tenant


def test_the_seven_tenants_with_their_chinese_names() -> None:
    names = {t.slug: t.name_zh for t in all_tenants()}
    assert names == {
        "daimiao": "岱庙街道",
        "caiyuan": "财源街道",
        "taiqian": "泰前街道",
        "shanggao": "上高街道",
        "xujialou": "徐家楼街道",
        "shengzhuang": "省庄镇",
        "qiujiadian": "邱家店镇",
    }


def test_unknown_tenant_error_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownTenant) as exc:
        get_tenant("beijing")
    assert "'beijing'" in exc.value.message
    assert "taiqian" in exc.value.message


def test_one_variable_moves_every_port(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in (
        "HONGLING_MONGO_URI",
        "HONGLING_KAFKA_BOOTSTRAP",
        "HONGLING_INTAKE_PORT",
        "HONGLING_GATEWAY_PORT",
        "HONGLING_MONGO_PORT",
        "HONGLING_KAFKA_PORT",
    ):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HONGLING_PORT_BASE", "41000")
    s = Settings()
    assert s.intake_port == 41052
    assert s.gateway_port == 41080
    assert s.kafka_bootstrap == "127.0.0.1:41092"
    assert s.mongo_uri == "mongodb://127.0.0.1:41017/"


def test_bad_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HONGLING_GRPC_WORKERS", "many")
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as exc:
        Settings()
    text = describe_errors(exc.value)
    assert "HONGLING_GRPC_WORKERS" in text
    assert "'many'" in text
