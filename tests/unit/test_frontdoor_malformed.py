"""The front door's request parsing: bytes that are not the method's message become a Malformed the door
refuses as INVALID_ARGUMENT (tests/e2e/test_malformed_input.py), where gRPC itself would answer INTERNAL."""

from __future__ import annotations

from hongling.frontdoor.v1 import frontdoor_pb2 as pb

from gateway.frontdoor import Malformed, lenient


def test_a_well_formed_request_is_parsed_as_before() -> None:
    parse = lenient(pb.GetGrantRequest.FromString, "GetGrantRequest")
    got = parse(pb.GetGrantRequest(grant_id="gr-1").SerializeToString())
    assert isinstance(got, pb.GetGrantRequest) and got.grant_id == "gr-1"


def test_truncated_bytes_and_a_string_that_is_not_utf8_are_malformed() -> None:
    parse = lenient(pb.GetOrgRecordRequest.FromString, "GetOrgRecordRequest")
    whole = pb.GetOrgRecordRequest(tenant="caiyuan", id="x" * 40).SerializeToString()
    for data in (whole[:-5], b"\x0a\x03\xff\xfe\xfd", b"\x0a\x7fxx", b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff"):
        got = parse(data)
        assert isinstance(got, Malformed) and got.message == "GetOrgRecordRequest", data
