"""RatingService gRPC servicer: protobuf <-> commands, nothing else."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import grpc
from hongling.evaluation.v1 import ratings_pb2 as pb
from hongling.evaluation.v1 import ratings_pb2_grpc as pb_grpc

from services.common.vocabulary import ISSUE_STATUS_ZH
from services.evaluation.ratings import handlers, peers
from services.evaluation.ratings.documents import RatingSettingsDoc, ResidentActDoc, UnitRatingDoc

SERVICE = "hongling.evaluation.v1.RatingService"
TASK_STATUS_ZH = {
    "open": "待认领",
    "assigned": "已派单",
    "accepted": "已接单",
    "in_progress": "办理中",
    "done": "已办结",
    "verified": "已验收",
    "rejected": "验收未通过",
    "reopened": "重新办理",
    "cancelled": "已取消",
}


def _ts(at: datetime | None) -> Any:
    return handlers.ts(at) if at is not None else None


def rating_to_pb(doc: ResidentActDoc) -> pb.IssueRating:
    return pb.IssueRating(
        rating_id=f"rating:{doc.id}",
        issue_id=doc.issue_id,
        task_id=doc.task_id,
        community_id=doc.community_id,
        score=doc.score or 0,
        comment=doc.comment,
        rated_at=_ts(doc.at),
        verification_id=doc.id,
    )


def rejection_to_pb(doc: ResidentActDoc) -> pb.ResultRejection:
    return pb.ResultRejection(
        rejection_id=f"resident:{doc.id}",
        issue_id=doc.issue_id,
        task_id=doc.task_id,
        community_id=doc.community_id,
        reason=doc.reason,
        rejected_at=_ts(doc.at),
        verification_id=doc.id,
        attempt=doc.attempt or 0,
    )


def unit_rating_to_pb(doc: Any) -> pb.UnitRating:
    return pb.UnitRating(
        rating_id=doc.id,
        unit_id=doc.unit_id,
        unit_name_zh=doc.unit_name_zh,
        community_id=doc.community_id,
        quarter=doc.quarter,
        rater_kind=doc.rater_kind,
        rater=doc.rater,
        score=doc.score,
        comment=doc.comment,
        recorded_by=doc.recorded_by,
        rated_at=_ts(handlers.aware(doc.rated_at)),
    )


def settings_to_pb(win: Any, doc: RatingSettingsDoc | None) -> pb.RatingSettings:
    return pb.RatingSettings(
        rating_window_days=win.rating_days,
        rejection_window_days=win.rejection_days,
        version=doc.version if doc is not None else 0,
        updated_at=_ts(handlers.aware(doc.updated_at)) if doc is not None else None,
        updated_by=doc.updated_by if doc is not None else "",
    )


def follow_to_pb(issue_id: str, f: handlers.Followed) -> pb.IssueFollow:
    issue = peers.issue(issue_id)
    task = peers.task_for_issue(issue_id)
    out = pb.IssueFollow(
        issue_id=issue.id,
        title=issue.title,
        category_zh=issue.category_zh,
        status=issue.status,
        status_zh=ISSUE_STATUS_ZH.get(issue.status, issue.status),
        reported_at=issue.created_at,
        community_name_zh=issue.place.community_name_zh,
        history=[
            pb.FollowStep(at=h.at, kind=h.kind, status=h.status, note_zh=h.note_zh, note_en=h.note_en)
            for h in issue.history
        ],
        can_rate=f.standing.can_rate,
        can_reject=f.standing.can_reject,
        why_not_zh=f.standing.why_not,
    )
    if task is not None:
        out.task_id = task.id
        out.task_status = task.status
        out.task_status_zh = task.status_zh or TASK_STATUS_ZH.get(task.status, task.status)
        if task.HasField("complete_by"):
            out.complete_by.CopyFrom(task.complete_by)
        if task.HasField("finished_at"):
            out.finished_at.CopyFrom(task.finished_at)
        out.overdue = task.overdue
    v = f.verdict
    if v is not None:
        out.attempt = v.attempt
        out.verified = v.status == "verified"
        if out.verified:
            out.verified_at.CopyFrom(handlers.ts(v.verified_at or v.at))
    if f.standing.rate_until is not None:
        out.rate_until.CopyFrom(handlers.ts(f.standing.rate_until))
    if f.standing.reject_until is not None:
        out.reject_until.CopyFrom(handlers.ts(f.standing.reject_until))
    if f.rating is not None:
        out.rating.CopyFrom(rating_to_pb(f.rating))
    if f.rejection is not None:
        out.rejection.CopyFrom(rejection_to_pb(f.rejection))
    return out


class RatingServicer(pb_grpc.RatingServiceServicer):
    def FollowIssue(self, request: pb.FollowIssueRequest, context: grpc.ServicerContext) -> pb.IssueFollow:
        issue_id = request.issue_id.strip()
        followed = handlers.follow(issue_id, request.follow_code)
        return follow_to_pb(followed.reporter.issue_id, followed)

    def RateIssue(self, request: pb.RateIssueRequest, context: grpc.ServicerContext) -> pb.IssueRating:
        doc = handlers.rate_issue(request.issue_id.strip(), request.follow_code, request.score, request.comment)
        return rating_to_pb(doc)

    def RejectResult(self, request: pb.RejectResultRequest, context: grpc.ServicerContext) -> pb.ResultRejection:
        doc = handlers.reject_result(request.issue_id.strip(), request.follow_code, request.reason)
        return rejection_to_pb(doc)

    def ListIssueRatings(
        self, request: pb.ListIssueRatingsRequest, context: grpc.ServicerContext
    ) -> pb.ListIssueRatingsResponse:
        rows, token = handlers.list_resident_acts(
            request.community_id, request.kind.strip(), request.page_size, request.page_token
        )
        out = pb.ListIssueRatingsResponse(next_page_token=token)
        for r in rows:
            row: Any = r
            out.rows.append(
                pb.IssueRatingRow(
                    id=row.id,
                    kind=row.kind,
                    issue_id=row.issue_id,
                    task_id=row.task_id,
                    community_id=row.community_id,
                    call_type=row.call_type,
                    score=row.score,
                    comment=row.comment,
                    reason=row.reason,
                    attempt=row.attempt,
                    at=_ts(row.at),
                )
            )
        return out

    def RateUnit(self, request: pb.RateUnitRequest, context: grpc.ServicerContext) -> pb.UnitRating:
        doc: UnitRatingDoc = handlers.rate_unit(
            request.unit_id, request.score, request.comment, request.quarter, request.rater_person_id
        )
        return unit_rating_to_pb(doc)

    def ListUnitRatings(
        self, request: pb.ListUnitRatingsRequest, context: grpc.ServicerContext
    ) -> pb.ListUnitRatingsResponse:
        rows, token = handlers.list_unit_ratings(
            request.community_id, request.unit_id, request.quarter, request.page_size, request.page_token
        )
        return pb.ListUnitRatingsResponse(ratings=[unit_rating_to_pb(r) for r in rows], next_page_token=token)

    def GetRatingSettings(
        self, request: pb.GetRatingSettingsRequest, context: grpc.ServicerContext
    ) -> pb.RatingSettings:
        win, doc = handlers.windows()
        return settings_to_pb(win, doc)

    def PutRatingSettings(self, request: pb.RatingSettings, context: grpc.ServicerContext) -> pb.RatingSettings:
        doc = handlers.put_settings(request.rating_window_days, request.rejection_window_days, int(request.version))
        win, _ = handlers.windows()
        return settings_to_pb(win, doc)


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_RatingServiceServicer_to_server(RatingServicer(), server)
    return [SERVICE]
