"""A district department's system talking to Hongling's gRPC front door (区直部门系统接入示例).

Copy this into a department system and adapt it. Every call carries the department's API token
(`authorization: Bearer <token>`) and names the approved grant (授权, "gr-…") it is made under; a call
outside the grant is refused with PERMISSION_DENIED naming what is missing, and every call, allowed or
refused, is in Hongling's audit log.

    export HONGLING_TOKEN=hl_…      # the department's API token (or --token)
    python examples/department_client.py --target 127.0.0.1:17050 --tenant shanggao --grant gr-… \\
        list member-units --fields name_zh,kind --filter kind=property_company
    python examples/department_client.py … get member-units <id>
    python examples/department_client.py … hand-over --title 协助开展防汛物资清点 --description … --address …
    python examples/department_client.py … grant            # the grant itself: scope, period, quota, use

A deployed front door serves mutual TLS: give the department system's client certificate and key and the CA
that signed the front door's certificate (each also from the environment), e.g.
    python examples/department_client.py --target frontdoor.hongling.example.gov.cn:443 \
        --cert dept.crt --key dept.key --ca hongling-frontdoor-ca.crt … grant
Without --cert the client speaks plaintext, as the local development stack's front door (127.0.0.1) does.

Prints JSON (UTF-8, not \\u escapes). Exit status 1 on a refusal, with the status code, message,
reason and field on stderr. Needs the generated stubs (`make protos`: hongling.frontdoor.v1) and grpcio.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from typing import Any

import grpc
from google.protobuf import json_format
from google.protobuf.message import Message
from hongling.common.v1 import location_pb2
from hongling.frontdoor.v1 import frontdoor_pb2 as pb
from hongling.frontdoor.v1 import frontdoor_pb2_grpc as pb_grpc

DEFAULT_TARGET = os.environ.get("HONGLING_FRONTDOOR", "127.0.0.1:17050")


def plain(value: Any) -> Any:
    """JSON numbers travel as doubles in google.protobuf.Struct: whole numbers back to ints."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def as_json(msg: Message) -> Any:
    return plain(json_format.MessageToDict(msg, preserving_proto_field_name=True))


def show(data: Any) -> None:
    print(json.dumps(data, ensure_ascii=False, indent=2))


def parse_filters(pairs: list[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"--filter wants key=value, not {pair!r}")
        out[key] = value
    return out


def run(args: argparse.Namespace, stub: pb_grpc.DepartmentGatewayStub, metadata: list[tuple[str, str]]) -> Any:
    fields = [f for f in (args.fields or "").split(",") if f] if hasattr(args, "fields") else []
    if args.command == "list":
        records: list[Any] = []
        token = ""
        while True:
            resp = stub.ListOrgRecords(
                pb.ListOrgRecordsRequest(
                    tenant=args.tenant,
                    collection=args.collection,
                    grant_id=args.grant,
                    fields=fields,
                    filter=parse_filters(args.filter),
                    page_size=args.page_size,
                    page_token=token,
                ),
                metadata=metadata,
                timeout=args.timeout,
            )
            records += [plain(json_format.MessageToDict(r)) for r in resp.records]
            token = resp.next_page_token
            if not token or not args.all:  # each page is one call against the grant's quota
                return {"records": records, "next_page_token": token or None}
    if args.command == "get":
        found = stub.GetOrgRecord(
            pb.GetOrgRecordRequest(
                tenant=args.tenant, collection=args.collection, id=args.id, grant_id=args.grant, fields=fields
            ),
            metadata=metadata,
            timeout=args.timeout,
        )
        return plain(json_format.MessageToDict(found.record))
    if args.command == "hand-over":
        location = location_pb2.Location(address=args.address, compound_id=args.compound_id)
        if args.lat is not None and args.lon is not None:
            location.lat, location.lon = args.lat, args.lon
        return as_json(
            stub.HandOverTask(
                pb.HandOverTaskRequest(
                    tenant=args.tenant,
                    grant_id=args.grant,
                    title=args.title,
                    description=args.description,
                    category=args.category,
                    location=location,
                    idempotency_key=args.idempotency_key or uuid.uuid4().hex,
                ),
                metadata=metadata,
                timeout=args.timeout,
            )
        )
    grant = stub.GetGrant(pb.GetGrantRequest(grant_id=args.grant), metadata=metadata, timeout=args.timeout)
    return plain(json_format.MessageToDict(grant.grant))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Call Hongling's gRPC front door as a district department.")
    parser.add_argument("--target", default=DEFAULT_TARGET, help=f"host:port (default {DEFAULT_TARGET})")
    parser.add_argument("--token", default=os.environ.get("HONGLING_TOKEN", ""), help="API token (env HONGLING_TOKEN)")
    parser.add_argument("--grant", default=os.environ.get("HONGLING_GRANT", ""), help="the grant id, gr-…")
    parser.add_argument("--tenant", default=os.environ.get("HONGLING_TENANT", ""), help="tenant slug, e.g. shanggao")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per call")
    parser.add_argument(
        "--cert", default=os.environ.get("HONGLING_CLIENT_CERT", ""), help="client certificate, PEM (mutual TLS)"
    )
    parser.add_argument("--key", default=os.environ.get("HONGLING_CLIENT_KEY", ""), help="its private key, PEM")
    parser.add_argument(
        "--ca", default=os.environ.get("HONGLING_FRONTDOOR_CA", ""), help="CA of the front door's certificate, PEM"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="list records of a collection under a data-access grant")
    ls.add_argument("collection", help="e.g. member-units, people, communities")
    ls.add_argument("--fields", help="comma-separated; default: every granted field")
    ls.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE")
    ls.add_argument("--page-size", type=int, default=0)
    ls.add_argument("--all", action="store_true", help="follow next_page_token (one call per page)")
    get = sub.add_parser("get", help="one record under a data-access grant")
    get.add_argument("collection")
    get.add_argument("id")
    get.add_argument("--fields")
    hand = sub.add_parser("hand-over", help="hand over an approved assistance task")
    hand.add_argument("--title", required=True, help="exactly one of the tasks the grant approves")
    hand.add_argument("--description", required=True)
    hand.add_argument("--category", default="")
    hand.add_argument("--address", default="")
    hand.add_argument("--compound-id", default="")
    hand.add_argument("--lat", type=float)
    hand.add_argument("--lon", type=float)
    hand.add_argument("--idempotency-key", default="", help="default: a fresh one")
    sub.add_parser("grant", help="the grant: scope, period, quota and use")
    args = parser.parse_args(argv)
    if not args.token:
        parser.error("give the department's API token: --token or HONGLING_TOKEN")
    metadata = [("authorization", f"Bearer {args.token}")]
    if bool(args.cert) != bool(args.key):
        parser.error("mutual TLS needs both --cert and --key")
    if args.cert:
        with open(args.cert, "rb") as c, open(args.key, "rb") as k:
            chain, key = c.read(), k.read()
        ca = None
        if args.ca:
            with open(args.ca, "rb") as f:
                ca = f.read()
        channel = grpc.secure_channel(args.target, grpc.ssl_channel_credentials(ca, key, chain))
    else:
        channel = grpc.insecure_channel(args.target)  # the local development stack only (127.0.0.1)
    with channel:
        try:
            show(run(args, pb_grpc.DepartmentGatewayStub(channel), metadata))
        except grpc.RpcError as exc:
            call: Any = exc
            trailing = dict(call.trailing_metadata() or ())
            error = {
                "code": call.code().name,
                "message": call.details(),
                "reason": trailing.get("x-hongling-error-reason"),
                "field": trailing.get("x-hongling-error-field"),
                "request_id": trailing.get("x-request-id"),
            }
            print(json.dumps({"error": error}, ensure_ascii=False), file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
