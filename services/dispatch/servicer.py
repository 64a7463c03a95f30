"""DispatchService gRPC servicer: protobuf <-> commands, nothing else.

A community worker's principal carries its community (services/common/community.py): its task lists, the
overdue list and the whistle board are limited to it, and a task or call of another community is NOT_FOUND
as a missing one, whatever the method (handlers.get_task, get_whistle, _change).
"""

from __future__ import annotations

from datetime import datetime

import grpc
from hongling.dispatch.v1 import dispatch_pb2 as pb
from hongling.dispatch.v1 import dispatch_pb2_grpc as pb_grpc

from services.common import community
from services.common.context import current_principal, require_tenant
from services.common.errors import PermissionDenied
from services.common.principal import Principal
from services.common.statsproto import days_to_pb, span_to_pb
from services.dispatch import domain, handlers, readmodel
from services.dispatch.documents import TaskDoc, WhistleDoc
from services.dispatch.handlers import aware, ts


def _principal() -> Principal:
    principal = current_principal.get()
    assert principal is not None  # the interceptor refuses calls without one
    return principal


def _responder(msg: pb.Responder) -> tuple[str, str]:
    return msg.kind, msg.id


def task_to_pb(doc: TaskDoc, now: datetime | None = None) -> pb.Task:
    now = now or handlers.utcnow()
    p = handlers.task_places(doc)
    left = handlers.places_left(doc)
    a = doc.assignment
    out = pb.Task(
        id=doc.id,
        tenant=require_tenant(),
        issue_id=doc.issue_id,
        status=doc.status,
        created_at=ts(doc.created_at),
        status_zh=domain.status_zh(doc.status),
        title=doc.title or "",
        category=doc.category or "",
        urgency=doc.urgency or "",
        call_type=doc.call_type or "",
        community_id=doc.community_id or "",
        grid_id=doc.grid_id or "",
        hazards=list(doc.hazards or []),
        whistle_id=doc.whistle_id or "",
        whistle_ids=list(doc.whistle_ids or []),
        needs=pb.Needs(
            skills=list(doc.skills or []), services=list(doc.services or []), resources=list(doc.resources or [])
        ),
        lead_places=doc.lead_places or 1,
        assistant_places=doc.assistant_places or 0,
        places_left=left,
        crew=[
            pb.CrewMember(
                kind=c.kind,
                id=c.id,
                name_zh=c.name_zh or "",
                role=c.role,
                via=c.via,
                joined_at=ts(c.joined_at),
                by=c.by or "",
            )
            for c in doc.crew or []
        ],
        report_in_by=ts(doc.report_in_by),
        complete_by=ts(doc.complete_by),
        overdue=handlers.is_overdue(doc, now),
        escalation_level=doc.escalation_level or "",
        history=[
            pb.TaskEvent(
                at=ts(h.at),
                action=h.action,
                from_status=h.from_status or "",
                to_status=h.to_status or "",
                reason=h.reason or "",
                by=h.by or "",
                note_zh=h.note_zh or "",
                note_en=h.note_en or "",
            )
            for h in doc.history or []
        ],
        allowed_actions=domain.allowed_actions(doc.status, lead_free=p.lead_free, places_left=left),
        cancel_reason=doc.cancel_reason or "",
        version=doc.version or 1,
        updated_at=ts(doc.updated_at or doc.created_at),
        finished_at=ts(doc.finished_at),
    )
    if a is not None:
        out.assignment.CopyFrom(
            pb.Assignment(
                kind=a.kind,
                id=a.id,
                name_zh=a.name_zh or "",
                by=a.by or "",
                override=bool(a.override),
                reason=a.reason or "",
                assigned_at=ts(a.assigned_at),
                response=a.response or "",
                response_reason=a.response_reason or "",
                responded_at=ts(a.responded_at),
                score=a.score or 0.0,
            )
        )
    return out


def whistle_to_pb(doc: WhistleDoc, tasks: dict[str, TaskDoc], now: datetime | None = None) -> pb.Whistle:
    now = now or handlers.utcnow()
    zh, en = domain.CALL_NAMES.get(doc.call_type, (doc.call_type, doc.call_type))
    mine = [tasks[t] for t in doc.task_ids if t in tasks]
    latest: dict[tuple[str, str], pb.Report] = {}
    for r in doc.reports or []:
        key = (r.responder_kind, r.responder_id)
        latest.pop(key, None)  # the latest answer, in the order of answering
        latest[key] = pb.Report(
            responder_kind=r.responder_kind,
            responder_id=r.responder_id,
            name_zh=r.name_zh or "",
            answer=r.answer,
            answer_zh=domain.ANSWER_ZH.get(r.answer, r.answer),
            reason=r.reason or "",
            proposed_kind=r.proposed_kind or "",
            proposed_id=r.proposed_id or "",
            late=bool(r.late),
            targeted=bool(r.targeted),
            reported_at=ts(r.reported_at),
            by=r.by or "",
        )
    report_in_by = aware(doc.report_in_by)
    return pb.Whistle(
        id=doc.id,
        tenant=require_tenant(),
        call_type=doc.call_type,
        call_type_zh=zh,
        call_type_en=en,
        status="open" if handlers.whistle_open(doc, tasks) else "closed",
        community_id=doc.community_id or "",
        grid_id=doc.grid_id or "",
        issue_ids=list(doc.issue_ids),
        tasks=[
            pb.WhistleTask(
                task_id=t.id,
                issue_id=t.issue_id,
                title=t.title or "",
                status=t.status,
                status_zh=domain.status_zh(t.status),
                places_left=handlers.places_left(t),
            )
            for t in mine
        ],
        targets=[
            pb.Target(
                kind=t.kind,
                id=t.id,
                name_zh=t.name_zh or "",
                source=t.source or "",
                reasons=list(t.reasons or []),
                answer=t.answer or "",
                answered_at=ts(t.answered_at),
                late=bool(t.late),
                silent=bool(t.silent),
            )
            for t in doc.targets or []
        ],
        reports=list(latest.values()),
        report_in_by=ts(doc.report_in_by),
        complete_by=ts(doc.complete_by),
        blown_at=ts(doc.blown_at),
        blown_by=doc.blown_by or "",
        manual=bool(doc.manual),
        note=doc.note or "",
        places_left=sum(handlers.places_left(t) for t in mine),
        report_in_closed=bool(doc.report_in_closed) or (report_in_by is not None and now > report_in_by),
        upgraded_from=doc.upgraded_from or "",
        answered=sum(1 for t in doc.targets or [] if t.answer),
        silent=sum(1 for t in doc.targets or [] if t.silent),
        version=doc.version or 1,
        updated_at=ts(doc.updated_at or doc.blown_at),
    )


def rules_to_pb(rules: domain.Rules) -> pb.DispatchRules:
    def minutes(td: object) -> int:
        return int(td.total_seconds() // 60)  # type: ignore[attr-defined]

    return pb.DispatchRules(
        call_types=[
            pb.CallTypeRule(
                call_type=r.call_type,
                name_zh=r.name_zh,
                name_en=r.name_en,
                urgency=r.urgency,
                report_in_minutes=minutes(r.report_in),
                completion_minutes=minutes(r.completion),
                report_in_reminder_minutes=minutes(r.report_in_reminder),
                completion_reminder_minutes=minutes(r.completion_reminder),
                district_escalation_minutes=minutes(r.district_escalation),
                assistant_places=r.assistant_places,
            )
            for r in (rules.rule(c) for c in domain.CALL_TYPES)
        ],
        matching_targets=rules.matching_targets,
        version=rules.version,
        updated_at=ts(rules.updated_at),
        updated_by=rules.updated_by,
    )


class DispatchServicer(pb_grpc.DispatchServiceServicer):
    def GetTask(self, request: pb.GetTaskRequest, context: grpc.ServicerContext) -> pb.Task:
        return task_to_pb(handlers.get_task(request.id))

    def GetTaskForIssue(self, request: pb.GetTaskForIssueRequest, context: grpc.ServicerContext) -> pb.Task:
        return task_to_pb(handlers.get_task_for_issue(request.issue_id))

    def ListTasks(self, request: pb.ListTasksRequest, context: grpc.ServicerContext) -> pb.ListTasksResponse:
        principal = _principal()
        domain.require_role(principal.role, domain.BOARD_ROLES, "list tasks")
        assignee = request.assignee_id.strip()
        if principal.role == domain.MEMBER:  # a member lists its own tasks only
            own = domain.acting_as(principal.role, principal.responder, ("", ""), "assignee_id")[1]
            if assignee and assignee != own:
                raise PermissionDenied(
                    "a member lists only its own tasks (成员只能查看本单位/本人的任务)",
                    reason="not_your_responder",
                    field="assignee_id",
                )
            assignee = own
        flt = handlers.TaskFilter(
            status=request.status.strip(),
            community_id=community.list_filter(request.community_id.strip(), principal),
            grid_id=request.grid_id.strip(),
            assignee_id=assignee,
            whistle_id=request.whistle_id.strip(),
            overdue=request.overdue,
            call_type=request.call_type.strip(),
        )
        docs, token = handlers.list_tasks(flt, request.page_size, request.page_token)
        now = handlers.utcnow()
        return pb.ListTasksResponse(tasks=[task_to_pb(d, now) for d in docs], next_page_token=token)

    def ListOverdue(self, request: pb.ListOverdueRequest, context: grpc.ServicerContext) -> pb.ListTasksResponse:
        principal = _principal()
        domain.require_role(principal.role, domain.READ_ROLES, "list overdue tasks")
        docs, token = handlers.list_overdue(
            community.list_filter(request.community_id.strip(), principal),
            request.deadline.strip(),
            request.page_size,
            request.page_token,
        )
        now = handlers.utcnow()
        return pb.ListTasksResponse(tasks=[task_to_pb(d, now) for d in docs], next_page_token=token)

    def GetDispatchStats(self, request: pb.GetDispatchStatsRequest, context: grpc.ServicerContext) -> pb.DispatchStats:
        principal = _principal()
        domain.require_role(principal.role, domain.STAFF_ROLES, "read the dashboard figures")
        asked = community.list_filter(request.community_id.strip(), principal)  # a community worker: its own
        stats, first, last = handlers.dispatch_stats(asked, request.from_day, request.to_day)
        return pb.DispatchStats(
            overdue_tasks=stats.overdue,
            days=days_to_pb(stats.days, first, last),
            spans=[span_to_pb(m, stats.spans[m]) for m in readmodel.SPAN_MEASURES],
        )

    def BlowWhistle(self, request: pb.BlowWhistleRequest, context: grpc.ServicerContext) -> pb.Whistle:
        doc = handlers.blow_whistle(
            list(request.issue_ids),
            request.call_type.strip(),
            request.note,
            [_responder(t) for t in request.targets],
            request.idempotency_key,
            _principal(),
        )
        return whistle_to_pb(doc, handlers.whistle_tasks([doc]))

    def GetWhistle(self, request: pb.GetWhistleRequest, context: grpc.ServicerContext) -> pb.Whistle:
        domain.require_role(_principal().role, domain.BOARD_ROLES, "read calls")
        doc = handlers.get_whistle(request.id)
        return whistle_to_pb(doc, handlers.whistle_tasks([doc]))

    def ListWhistles(self, request: pb.ListWhistlesRequest, context: grpc.ServicerContext) -> pb.ListWhistlesResponse:
        principal = _principal()
        domain.require_role(principal.role, domain.BOARD_ROLES, "read the whistle board")
        docs, tasks, token = handlers.list_whistles(
            community.list_filter(request.community_id.strip(), principal),
            request.status.strip(),
            request.call_type.strip(),
            request.responder_id,
            request.page_size,
            request.page_token,
        )
        now = handlers.utcnow()
        return pb.ListWhistlesResponse(whistles=[whistle_to_pb(d, tasks, now) for d in docs], next_page_token=token)

    def ReportIn(self, request: pb.ReportInRequest, context: grpc.ServicerContext) -> pb.Whistle:
        doc = handlers.report_in(
            request.whistle_id,
            _responder(request.responder),
            request.answer,
            request.reason,
            _responder(request.proposed) if request.HasField("proposed") and request.proposed.id else None,
            request.expected_version,
            _principal(),
        )
        return whistle_to_pb(doc, handlers.whistle_tasks([doc]))

    def ClaimTask(self, request: pb.ClaimTaskRequest, context: grpc.ServicerContext) -> pb.Task:
        return task_to_pb(
            handlers.claim_task(request.task_id, _responder(request.claimant), request.role, _principal())
        )

    def RankCandidates(
        self, request: pb.RankCandidatesRequest, context: grpc.ServicerContext
    ) -> pb.RankCandidatesResponse:
        view = handlers.rank_for_task(request.task_id, request.limit, _principal())
        out = pb.RankCandidatesResponse(
            considered=view.considered,
            needs=pb.Needs(
                skills=list(view.need.skills), services=list(view.need.services), resources=list(view.need.resources)
            ),
            task_id=request.task_id,
        )
        for c in view.candidates:
            kind = domain.KIND_ALIASES.get(c.kind, c.kind)
            out.candidates.append(
                pb.RankedCandidate(
                    kind=kind,
                    id=c.id,
                    name_zh=c.name_zh,
                    community_id=c.community_id,
                    score=c.score,
                    reasons=list(c.reasons),
                    on_crew=(kind, c.id) in view.on_crew,
                    reported_in=(kind, c.id) in view.reported_in,
                )
            )
        return out

    def AssignTask(self, request: pb.AssignTaskRequest, context: grpc.ServicerContext) -> pb.Task:
        return task_to_pb(
            handlers.assign_task(
                request.task_id, _responder(request.assignee), request.reason, request.expected_version, _principal()
            )
        )

    def RespondToAssignment(self, request: pb.RespondToAssignmentRequest, context: grpc.ServicerContext) -> pb.Task:
        return task_to_pb(
            handlers.respond_to_assignment(
                request.task_id, request.accept, request.reason, request.expected_version, _principal()
            )
        )

    def TransitionTask(self, request: pb.TransitionTaskRequest, context: grpc.ServicerContext) -> pb.Task:
        return task_to_pb(
            handlers.transition_task(
                request.task_id, request.action, request.reason, request.expected_version, _principal()
            )
        )

    def GetDispatchRules(self, request: pb.GetDispatchRulesRequest, context: grpc.ServicerContext) -> pb.DispatchRules:
        return rules_to_pb(handlers.current_rules())

    def PutDispatchRules(self, request: pb.DispatchRules, context: grpc.ServicerContext) -> pb.DispatchRules:
        calls = [
            {
                "call_type": c.call_type,
                "report_in_minutes": c.report_in_minutes,
                "completion_minutes": c.completion_minutes,
                "report_in_reminder_minutes": c.report_in_reminder_minutes,
                "completion_reminder_minutes": c.completion_reminder_minutes,
                "district_escalation_minutes": c.district_escalation_minutes,
                "assistant_places": c.assistant_places,
            }
            for c in request.call_types
        ]
        return rules_to_pb(handlers.put_rules(calls, request.matching_targets, request.version, _principal()))


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_DispatchServiceServicer_to_server(DispatchServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["DispatchService"].full_name]
