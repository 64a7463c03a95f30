"""The publication kinds' look-ups at other services over gRPC, as the publication service itself (a service
principal of the tenant bound by the caller): org's communities (ids and names) and evaluation's measures and
frozen boards. Used by the report (reports/) and the boards (boards/); the tenant is the one bound in the
context (services.common.context)."""

from __future__ import annotations

from hongling.evaluation.v1 import evaluation_pb2, evaluation_pb2_grpc
from hongling.org.v1 import org_pb2, org_pb2_grpc

from services.common.grpc_client import LazyStub, peer_call

CALLER = "publication"
PAGE = 500

_org = LazyStub(org_pb2_grpc.OrgServiceStub, "org", "hongling.org.v1.OrgService", CALLER)
_evaluation = LazyStub(
    evaluation_pb2_grpc.EvaluationServiceStub, "evaluation", "hongling.evaluation.v1.EvaluationService", CALLER
)


def communities() -> dict[str, str]:
    """The bound tenant's communities: id -> 中文名 (every page)."""
    out: dict[str, str] = {}
    token = ""
    while True:
        request = org_pb2.ListRequest(page_size=PAGE, page_token=token)
        page = peer_call(lambda: _org().ListCommunities(request), CALLER)  # noqa: B023 (called at once)
        for c in page.items:
            out[c.id] = c.name_zh or c.id
        token = page.next_page_token
        if not token:
            return out


def measures(subject: str, period: str, community_id: str = "") -> evaluation_pb2.SubjectMeasures:
    """One subject's measures for a period (evaluation's GetMeasures)."""
    request = evaluation_pb2.GetMeasuresRequest(subject=subject, period=period, community_id=community_id)
    return peer_call(lambda: _evaluation().GetMeasures(request), CALLER)


def boards(quarter: str, community_id: str, version: int, board: str = "", token: str = "") -> evaluation_pb2.BoardSet:
    """A page of a quarter's boards (evaluation's GetBoards; community_id "" = the tenant's)."""
    request = evaluation_pb2.GetBoardsRequest(
        quarter=quarter, community_id=community_id, version=version, board=board, page_size=200, page_token=token
    )
    return peer_call(lambda: _evaluation().GetBoards(request), CALLER)


def whole_boards(quarter: str, community_id: str, version: int) -> evaluation_pb2.BoardSet:
    """A quarter's boards with every entry (each board paged to its end)."""
    found = boards(quarter, community_id, version)
    for board in found.boards:
        token = board.next_page_token
        while token:
            more = boards(quarter, community_id, found.version or version, board=board.kind, token=token)
            page = next((b for b in more.boards if b.kind == board.kind), None)
            if page is None:
                break
            board.entries.extend(page.entries)
            token = page.next_page_token
        board.next_page_token = ""
    return found


def weights() -> evaluation_pb2.MeasureSettings:
    """The tenant's weights and prior k (evaluation's GetWeights)."""
    return peer_call(lambda: _evaluation().GetWeights(evaluation_pb2.GetWeightsRequest()), CALLER)
