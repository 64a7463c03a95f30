"""The AsyncAPI 3.0 document of the events and webhooks (gateway/asyncapi.py, served at /api/v1/asyncapi.json):
valid by @asyncapi/parser (tools/asyncapi-validate, installed by `make test` / `make asyncapi-validator` from its
package-lock.json), a channel for every topic services/common/topics.py creates, a message for every event of the
hongling.events.v1 protos, and schemas that what the code really writes fits: the Kafka records' CloudEvents
headers, the proto3 JSON rendering of every event, and the webhooks' bodies and signature headers.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from flask import Flask
from flask.testing import FlaskClient
from google.protobuf import json_format
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT7

from gateway.app import create_app
from gateway.asyncapi import build_asyncapi, event_classes, event_files
from gateway.clients import Clients
from services.common.events import CloudEvent, topic_for
from services.common.settings import SERVICES, Settings
from services.common.topics import PARTITIONS, STATE_SERVICES, wanted_topics
from services.dispatch import webhooks
from tests.unit.test_gateway_policy import NoNetwork

REPO = Path(__file__).resolve().parents[2]
TOOL = REPO / "tools" / "asyncapi-validate"
PARSER_PACKAGE = TOOL / "node_modules" / "@asyncapi" / "parser" / "package.json"
DOC_URI = "urn:hongling:asyncapi"
F = FieldDescriptor
AT = datetime(2026, 12, 6, 1, 30, 15, tzinfo=UTC)


@pytest.fixture(scope="module")
def doc() -> dict[str, Any]:
    return build_asyncapi()


@pytest.fixture
def app(tmp_path: Path) -> Flask:
    return create_app(Settings(api_tokens_file=str(tmp_path / "api-tokens.toml")), clients=cast(Clients, NoNetwork()))


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


# ---------------------------------------------------------------- @asyncapi/parser


def node_validator() -> list[str]:
    """The command that validates a document: node + tools/asyncapi-validate/validate.mjs, installed from the lock.
    Missing is a failure, never a skip: `make test` installs it."""
    node = shutil.which("node")
    assert node, "node not found: the AsyncAPI validator needs Node.js 20.19+ (run `make test`)"
    assert PARSER_PACKAGE.is_file(), (
        f"@asyncapi/parser is not installed in {TOOL.relative_to(REPO)}: run `make test` "
        "(or `make asyncapi-validator`: npm ci from its package-lock.json)"
    )
    locked = json.loads((TOOL / "package-lock.json").read_text())["packages"]["node_modules/@asyncapi/parser"]
    installed = json.loads(PARSER_PACKAGE.read_text())["version"]
    assert installed == locked["version"], (
        f"@asyncapi/parser {installed} installed but the lock says {locked['version']}: run `make test`"
    )
    return [node, str(TOOL / "validate.mjs")]


def validate_file(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*node_validator(), str(path)], capture_output=True, text=True, timeout=120, cwd=TOOL)


def test_the_document_is_valid_asyncapi_3_by_the_asyncapi_parser(doc: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "asyncapi.json"
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    done = validate_file(path)
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"@asyncapi/parser found errors:\n{output}"
    assert "valid AsyncAPI 3.0.0" in done.stdout, output
    assert not [line for line in output.splitlines() if line.startswith("error ")], output
    assert " 0 warning(s)" in done.stdout, output


def test_the_validator_refuses_an_invalid_document(doc: dict[str, Any], tmp_path: Path) -> None:
    bad = json.loads(json.dumps(doc))
    bad["operations"]["publish_dispatch"]["action"] = "publish"  # AsyncAPI 2's word, not 3's
    bad["channels"][next(iter(bad["channels"]))]["bindings"]["kafka"]["partitions"] = "six"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(bad), encoding="utf-8")
    done = validate_file(path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "operations/publish_dispatch/action" in done.stderr and "partitions" in done.stderr


# ---------------------------------------------------------------- what it covers


def test_every_topic_the_services_create_has_a_channel(doc: dict[str, Any]) -> None:
    addresses = [c["address"] for c in doc["channels"].values()]
    assert sorted(a for a in addresses if a) == sorted(wanted_topics())
    for channel in doc["channels"].values():
        if channel["address"]:
            binding = channel["bindings"]["kafka"]
            assert binding["topic"] == channel["address"] and binding["partitions"] == PARTITIONS
    events = {c["address"]: c for c in doc["channels"].values() if c["address"] in {topic_for(s) for s in SERVICES}}
    assert len(events) == len(SERVICES)
    for channel in events.values():
        assert channel["bindings"]["kafka"]["topicConfiguration"] == {"cleanup.policy": ["delete"], "retention.ms": -1}
    state = doc["channels"]["dispatch_state_v1"]["bindings"]["kafka"]["topicConfiguration"]
    assert state["cleanup.policy"] == ["compact"] and "dispatch" in STATE_SERVICES


def test_every_event_of_the_events_protos_is_a_message_of_its_services_topic(doc: dict[str, Any]) -> None:
    files = event_files()
    assert [f.service for f in files] == list(SERVICES)  # every service publishes; each file is found
    # Every top-level message of the events protos is an event, except the types a BoardsFrozen is made of.
    every = {d.full_name for f in files for d in f.messages}
    parts = {"hongling.events.v1.Board", "hongling.events.v1.BoardEntry"}
    assert set(event_classes()) == every - parts and len(every - parts) >= 40
    messages = doc["components"]["messages"]
    kafka = {
        m["x-protobuf-message"] for k, m in messages.items() if not k.endswith("Webhook") and "x-protobuf-message" in m
    }
    assert kafka == every - parts
    for f in files:
        channel = doc["channels"][topic_for(f.service).removeprefix("hongling.").replace(".", "_")]
        assert {messages[k]["x-protobuf-message"] for k in channel["messages"]} == {d.full_name for d in f.events}
        send = doc["operations"][f"publish_{f.service}"]
        receive = doc["operations"][f"consume_{f.service}"]
        assert (send["action"], receive["action"]) == ("send", "receive")
        assert len(send["messages"]) == len(channel["messages"]) == len(receive["messages"])
    whistle = messages["WhistleBlown"]
    assert whistle["contentType"] == "application/protobuf" and whistle["title"] == "WhistleBlown"
    assert "吹响集结号" in whistle["summary"] and "protobuf binary encoding" in whistle["description"]
    assert whistle["headers"]["properties"]["ce_type"]["const"] == "hongling.events.v1.WhistleBlown"
    assert "<tenant>:<aggregate id>" in whistle["bindings"]["kafka"]["key"]["description"]
    assert whistle["payload"] == {"$ref": "#/components/schemas/hongling.events.v1.WhistleBlown"}


def test_payload_schemas_follow_the_proto3_json_mapping(doc: dict[str, Any]) -> None:
    schemas = doc["components"]["schemas"]
    whistle = schemas["hongling.events.v1.WhistleBlown"]["properties"]
    assert whistle["blown_at"]["type"] == "string" and whistle["blown_at"]["format"] == "date-time"
    assert whistle["issue_ids"] == {"type": "array", "items": {"type": "string"}}
    assert whistle["report_in_by"]["description"].startswith("report-in deadline")
    funds = schemas["hongling.events.v1.FundsAllocated"]
    assert funds["properties"]["amount_fen"]["type"] == "string"  # int64 as a decimal string
    assert funds["properties"]["amount_fen"]["pattern"] == "^-?[0-9]+$"
    assert "amount_fen" in funds["required"]
    boards = schemas["hongling.events.v1.BoardsFrozen"]["properties"]["boards"]
    assert boards["items"] == {"$ref": "#/components/schemas/hongling.events.v1.Board"}
    received = schemas["hongling.events.v1.IssueReceived"]
    assert received["properties"]["location"] == {"$ref": "#/components/schemas/hongling.common.v1.Location"}
    assert "location" not in received["required"] and "received_at" not in received["required"]
    assert schemas["hongling.common.v1.Location"]["required"] == ["address", "compound_id"]  # lat/lon optional


# ---------------------------------------------------------------- what the code writes fits


def populated(cls: type[Message]) -> Message:
    """A message with every field set (repeated ones twice), nested messages too."""
    msg = cls()
    for fd in msg.DESCRIPTOR.fields:
        if fd.type == F.TYPE_MESSAGE:
            sub = getattr(msg, fd.name)
            for target in (sub.add(), sub.add()) if fd.is_repeated else (sub,):
                if fd.message_type.full_name == "google.protobuf.Timestamp":
                    target.FromDatetime(AT)
                else:
                    target.CopyFrom(populated(type(target)))
            continue
        value: Any = {
            F.CPPTYPE_STRING: "值-1" if fd.type == F.TYPE_STRING else None,
            F.CPPTYPE_INT32: -7,
            F.CPPTYPE_INT64: 2**40 + 1,
            F.CPPTYPE_UINT32: 7,
            F.CPPTYPE_UINT64: 2**40,
            F.CPPTYPE_DOUBLE: 1.5,
            F.CPPTYPE_FLOAT: 0.5,
            F.CPPTYPE_BOOL: True,
            F.CPPTYPE_ENUM: 1,
        }[fd.cpp_type]
        if fd.type == F.TYPE_BYTES:
            value = b"\x00\x01"
        if fd.is_repeated:
            getattr(msg, fd.name).extend([value, value])
        else:
            setattr(msg, fd.name, value)
    return msg


def resolved(doc: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """A schema with its $refs made absolute (into the document's resource)."""
    return cast(dict[str, Any], json.loads(json.dumps(schema).replace('"#/components/', f'"{DOC_URI}#/components/')))


def errors(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    registry: Registry[Any] = Registry().with_resource(
        DOC_URI, Resource.from_contents(doc, default_specification=DRAFT7)
    )
    check = Draft7Validator(resolved(doc, schema), registry=registry, format_checker=Draft7Validator.FORMAT_CHECKER)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in check.iter_errors(value)]


def cloud_event(cls: type[Message], msg: Message) -> CloudEvent:
    return CloudEvent(
        id="0123456789abcdef0123456789abcdef",
        source="/hongling/dispatch/taiqian",
        type=cls.DESCRIPTOR.full_name,
        time=AT,
        subject="tasks/t-1",
        tenant="taiqian",
        data=msg.SerializeToString(),
    )


def test_every_events_json_rendering_and_kafka_headers_fit_the_document(doc: dict[str, Any]) -> None:
    messages = {
        m["x-protobuf-message"]: m
        for k, m in doc["components"]["messages"].items()
        if not k.endswith("Webhook") and "x-protobuf-message" in m
    }
    for name, cls in event_classes().items():
        message = messages[name]
        for msg in (cls(), populated(cls)):  # defaults (every field without presence printed) and all set
            rendered = json_format.MessageToDict(
                msg, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
            )
            assert not errors(doc, message["payload"], rendered), (name, errors(doc, message["payload"], rendered))
        headers = {k: v.decode() for k, v in cloud_event(cls, populated(cls)).headers()}
        assert not errors(doc, message["headers"], headers), (name, errors(doc, message["headers"], headers))
        wrong = {**headers, "ce_type": "hongling.events.v1.Other"}
        assert errors(doc, message["headers"], wrong), name


def test_what_a_webhook_sends_fits_the_document_and_its_headers_are_documented(doc: dict[str, Any]) -> None:
    channel = doc["channels"]["webhooks"]
    assert channel["address"] is None and channel["servers"] == [{"$ref": "#/servers/webhook-receiver"}]
    assert doc["operations"]["deliver_webhook"]["bindings"]["http"]["method"] == "POST"
    assert {m["name"] for k, m in doc["components"]["messages"].items() if k.endswith("Webhook")} == set(
        webhooks.EVENT_TYPES
    )
    for short, cls in webhooks.EVENT_TYPES.items():
        message = doc["components"]["messages"][f"{short}Webhook"]
        assert message["contentType"] == webhooks.CONTENT_TYPE
        msg = populated(cls)
        event = cloud_event(cls, msg)
        body = webhooks.cloudevent_json(event, msg)
        assert not errors(doc, message["payload"], json.loads(body)), errors(doc, message["payload"], json.loads(body))
        headers = webhooks.signed_request("whsec_" + "QUFB" * 11, f"wh-1:{event.id}", 2, body, event)
        assert not errors(doc, message["headers"], headers), errors(doc, message["headers"], headers)
        props = message["headers"]["properties"]
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature", "X-Hongling-Signature"):
            assert name in props and props[name]["description"], name
        assert props["X-Hongling-Signature"]["deprecated"] is True
        assert {"webhook-id", "webhook-timestamp", "webhook-signature"} <= set(message["headers"]["required"])
        assert message["bindings"]["http"]["headers"] == message["headers"]
    text = doc["channels"]["webhooks"]["description"]
    for words in ("Standard Webhooks", "exponential backoff", "8 attempts", "2 s doubling", "600 s", "webhook-id"):
        assert words in text, words
    about = doc["info"]["description"]
    for words in ("at least once", "ce_id", "dead-letter", "hongling.<group>.dlq.v1", "protobuf binary encoding"):
        assert words in about.lower() or words in about, words


# ---------------------------------------------------------------- served


def test_the_gateway_serves_it_to_anyone_cached_and_conditional(client: FlaskClient, doc: dict[str, Any]) -> None:
    first = client.get("/api/v1/asyncapi.json")
    assert first.status_code == 200 and first.mimetype == "application/json" and first.headers["ETag"]
    assert first.json == json.loads(json.dumps(doc))
    again = client.get("/api/v1/asyncapi.json", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert client.get("/api/v1/asyncapi.json", headers={"Authorization": "Bearer hl_" + "q" * 43}).status_code == 401
    spec = client.get("/api/v1/openapi.json").get_json()
    assert "/api/v1/asyncapi.json" in spec["paths"]
