"""VerificationService gRPC servicer: protobuf <-> commands, nothing else."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.evaluation.v1 import verification_pb2 as pb
from hongling.evaluation.v1 import verification_pb2_grpc as pb_grpc

from services.common.context import require_tenant
from services.evaluation.verification import domain, handlers
from services.evaluation.verification.documents import CheckDoc, RoundDoc, VerificationRulesDoc

SERVICE = "hongling.evaluation.v1.VerificationService"


def _ts(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    out = Timestamp()
    out.FromDatetime(at if at.tzinfo else at.replace(tzinfo=UTC))
    return out


def rules_to_pb(rules: dict[str, domain.Rule], doc: VerificationRulesDoc | None) -> pb.VerificationRules:
    out = pb.VerificationRules(version=int(doc.version or 1) if doc is not None else 0)
    for ct in domain.CALL_TYPES:
        r = domain.rule_for(rules, ct)
        out.rules.append(
            pb.CallTypeRule(
                call_type=ct,
                method=r.method,
                quorum=r.quorum,
                decision=r.decision,
                distance_m=r.distance_m,
                call_type_zh=domain.CALL_TYPE_ZH[ct],
                method_zh=domain.METHOD_ZH[r.method],
            )
        )
    if doc is not None:
        out.updated_by = doc.updated_by or ""
        out.updated_at.CopyFrom(_ts(doc.updated_at) or Timestamp())
    return out


def round_to_pb(doc: RoundDoc) -> pb.ReviewRound:
    votes = handlers.round_votes(doc)
    counts: dict[str, tuple[int, int]] = {}
    for v in votes:
        yes, no = counts.get(v.task_id, (0, 0))
        counts[v.task_id] = (yes + 1, no) if v.passed else (yes, no + 1)
    closed = doc.status == domain.CLOSED
    return pb.ReviewRound(
        id=doc.id,
        tenant=require_tenant(),
        community_id=doc.community_id,
        title=doc.title,
        status=doc.status,
        status_zh=domain.ROUND_STATUS_ZH.get(doc.status, doc.status),
        convenor=doc.convenor,
        reviewers=[
            pb.Reviewer(id=r.id, kind=r.kind, name_zh=r.name_zh, kind_zh=domain.REVIEWER_KIND_ZH.get(r.kind, r.kind))
            for r in doc.reviewers
        ],
        quorum=doc.quorum,
        decision=doc.decision,
        tasks=[
            pb.RoundTask(
                task_id=t.task_id,
                issue_id=t.issue_id,
                title=t.title,
                call_type=t.call_type,
                attempt=t.attempt or 1,
                votes_pass=t.votes_pass if closed else counts.get(t.task_id, (0, 0))[0],
                votes_fail=t.votes_fail if closed else counts.get(t.task_id, (0, 0))[1],
                verdict=t.verdict or "",
                verdict_zh=domain.VERDICT_ZH.get(t.verdict or "", ""),
                verification_id=t.verification_id or "",
                reasons=list(t.reasons or []),
            )
            for t in doc.tasks
        ],
        votes=[_vote(v) for v in votes],
        created_at=_ts(doc.created_at),
        closed_at=_ts(doc.closed_at),
        version=int(doc.version or 1),
        updated_at=_ts(doc.updated_at or doc.created_at),
    )


def _vote(v: Any) -> pb.Vote:
    out = pb.Vote(reviewer_id=v.reviewer_id, task_id=v.task_id, reason=v.reason or "", by=v.by or "", at=_ts(v.at))
    setattr(out, "pass", bool(v.passed))  # "pass" is a Python keyword
    return out


def check_to_pb(doc: CheckDoc) -> pb.OnsiteCheck:
    out = pb.OnsiteCheck(
        id=doc.id,
        tenant=require_tenant(),
        community_id=doc.community_id,
        task_id=doc.task_id,
        issue_id=doc.issue_id,
        call_type=doc.call_type,
        attempt=doc.attempt or 1,
        inspector=doc.inspector,
        notes=doc.notes,
        photos=[
            pb.CheckPhoto(id=p.id, filename=p.filename, content_type=p.content_type, size=p.size, sha256=p.sha256)
            for p in doc.photos
        ],
        lat=doc.lat,
        lon=doc.lon,
        distance_m=doc.distance_m if doc.distance_m is not None else -1.0,
        place_flagged=bool(doc.place_flagged),
        distance_limit_m=doc.distance_limit_m or 0,
        reason=doc.reason,
        verdict=domain.PASSED if doc.passed else domain.FAILED,
        verdict_zh=domain.VERDICT_ZH[domain.PASSED if doc.passed else domain.FAILED],
        verification_id=doc.verification_id,
        checked_at=_ts(doc.checked_at),
        version=int(doc.version or 1),
        place_note_zh=doc.place_note_zh or "",
    )
    setattr(out, "pass", bool(doc.passed))
    return out


def _pass(request: Any) -> bool:
    return bool(getattr(request, "pass"))


class VerificationServicer(pb_grpc.VerificationServiceServicer):
    def ListQueue(self, request: pb.ListQueueRequest, context: grpc.ServicerContext) -> pb.ListQueueResponse:
        items, token = handlers.queue(request.community_id, request.call_type, request.page_size, request.page_token)
        out = pb.ListQueueResponse(next_page_token=token)
        for t, rule in items:
            item = pb.QueueItem(
                task_id=t.id,
                issue_id=t.issue_id,
                community_id=t.community_id,
                grid_id=t.grid_id,
                call_type=t.call_type,
                call_type_zh=domain.CALL_TYPE_ZH.get(t.call_type, t.call_type),
                title=t.title,
                category=t.category,
                attempt=t.attempt,
                method=rule.method,
                method_zh=domain.METHOD_ZH[rule.method],
                crew_ids=list(t.crew_ids),
                task_version=t.version,
            )
            if t.done_at is not None:
                item.done_at.FromDatetime(t.done_at)
            out.items.append(item)
        return out

    def CreateRound(self, request: pb.CreateRoundRequest, context: grpc.ServicerContext) -> pb.ReviewRound:
        domain.require_role(handlers._caller().role, domain.STAFF, "convene review rounds")
        new = domain.check_new_round(
            community_id=request.community_id,
            title=request.title,
            task_ids=list(request.task_ids),
            reviewers=[domain.ReviewerIn(r.id, r.kind, r.name_zh) for r in request.reviewers],
            quorum=request.quorum,
        )
        key = domain.text(request.idempotency_key, "idempotency_key", "幂等键", 200)
        return round_to_pb(handlers.create_round(new, key))

    def GetRound(self, request: pb.GetRoundRequest, context: grpc.ServicerContext) -> pb.ReviewRound:
        return round_to_pb(handlers.get_round(request.id.strip()))

    def ListRounds(self, request: pb.ListRoundsRequest, context: grpc.ServicerContext) -> pb.ListRoundsResponse:
        rows, token = handlers.list_rounds(request.community_id, request.status, request.page_size, request.page_token)
        out = pb.ListRoundsResponse(next_page_token=token)
        for r in rows:
            out.rounds.append(
                pb.RoundRow(
                    id=r.id,
                    community_id=r.community_id,
                    title=r.title,
                    status=r.status,
                    status_zh=domain.ROUND_STATUS_ZH.get(r.status, r.status),
                    convenor=r.convenor,
                    tasks=r.tasks,
                    reviewers=r.reviewers,
                    quorum=r.quorum,
                    passed=r.passed,
                    failed=r.failed,
                    undecided=max(0, r.tasks - r.passed - r.failed) if r.status == domain.CLOSED else 0,
                    created_at=_ts(r.created_at),
                    closed_at=_ts(r.closed_at),
                )
            )
        return out

    def CastVote(self, request: pb.CastVoteRequest, context: grpc.ServicerContext) -> pb.ReviewRound:
        doc = handlers.cast_vote(
            request.round_id.strip(), request.task_id.strip(), request.reviewer_id, _pass(request), request.reason
        )
        return round_to_pb(doc)

    def CloseRound(self, request: pb.CloseRoundRequest, context: grpc.ServicerContext) -> pb.ReviewRound:
        return round_to_pb(handlers.close_round(request.id.strip()))

    def RecordCheck(self, request: pb.RecordCheckRequest, context: grpc.ServicerContext) -> pb.OnsiteCheck:
        doc = handlers.record_check(
            request.task_id,
            notes=request.notes,
            photos=[domain.PhotoIn(p.filename, p.content_type, p.content) for p in request.photos],
            lat=request.lat,
            lon=request.lon,
            passed=_pass(request),
            reason=request.reason,
            idempotency_key=request.idempotency_key,
        )
        return check_to_pb(doc)

    def GetCheck(self, request: pb.GetCheckRequest, context: grpc.ServicerContext) -> pb.OnsiteCheck:
        return check_to_pb(handlers.get_check(request.id.strip()))

    def ListChecks(self, request: pb.ListChecksRequest, context: grpc.ServicerContext) -> pb.ListChecksResponse:
        rows, token = handlers.list_checks(request.community_id, request.task_id, request.page_size, request.page_token)
        out = pb.ListChecksResponse(next_page_token=token)
        for r in rows:
            row = pb.CheckRow(
                id=r.id,
                community_id=r.community_id,
                task_id=r.task_id,
                inspector=r.inspector,
                place_flagged=r.place_flagged,
                distance_m=r.distance_m,
                photos=r.photos,
                checked_at=_ts(r.checked_at),
                attempt=r.attempt,
            )
            setattr(row, "pass", bool(r.passed))
            out.checks.append(row)
        return out

    def GetCheckPhoto(self, request: pb.GetCheckPhotoRequest, context: grpc.ServicerContext) -> pb.CheckPhotoContent:
        meta, content = handlers.get_photo(request.check_id.strip(), request.photo_id.strip())
        return pb.CheckPhotoContent(
            photo=pb.CheckPhoto(
                id=meta.id, filename=meta.filename, content_type=meta.content_type, size=meta.size, sha256=meta.sha256
            ),
            content=content,
        )

    def GetVerificationRules(
        self, request: pb.GetVerificationRulesRequest, context: grpc.ServicerContext
    ) -> pb.VerificationRules:
        return rules_to_pb(*handlers.get_rules())

    def PutVerificationRules(
        self, request: pb.VerificationRules, context: grpc.ServicerContext
    ) -> pb.VerificationRules:
        raw = [
            {
                "call_type": r.call_type,
                "method": r.method,
                "quorum": r.quorum,
                "decision": r.decision,
                "distance_m": r.distance_m,
            }
            for r in request.rules
        ]
        return rules_to_pb(*handlers.put_rules(raw, int(request.version)))


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_VerificationServiceServicer_to_server(VerificationServicer(), server)
    return [SERVICE]
