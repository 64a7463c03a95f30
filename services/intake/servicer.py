"""IntakeService gRPC servicer: protobuf <-> commands, nothing else.

A community worker's principal carries its community (services/common/community.py): its lists and counts
are limited to it, and an issue of another community (read, reclassified, its contact or files) is
NOT_FOUND as a missing one (handlers.get_issue, change_issue). It may report an issue anywhere in the
tenant: the issue lands in the community its location lies in (首问负责: a resident is never turned away).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.timestamp_pb2 import Timestamp
from hongling.common.v1 import location_pb2 as common_pb2
from hongling.intake.v1 import intake_pb2 as pb
from hongling.intake.v1 import intake_pb2_grpc as pb_grpc

from services.common import community, rollups
from services.common.context import current_principal, require_tenant
from services.common.errors import InvalidArgument
from services.common.principal import Principal
from services.common.protect import Protector
from services.common.statsproto import days_to_pb, span_to_pb
from services.intake import domain, filing, handlers, readmodel
from services.intake.classify import Rules
from services.intake.documents import IssueDoc
from services.intake.placement import Placer

IDEMPOTENCY_KEY_MAX = 200
ORIGIN_MAX = 200


def _ts(at: datetime | None) -> Timestamp | None:
    if at is None:
        return None
    ts = Timestamp()
    ts.FromDatetime(at if at.tzinfo else at.replace(tzinfo=UTC))
    return ts


def issue_to_pb(doc: IssueDoc, rules: Rules) -> pb.Issue:
    loc = doc.location
    place = doc.place
    contact = doc.contact
    category = rules.category(doc.category)
    out = pb.Issue(
        id=doc.id,
        tenant=require_tenant(),
        title=doc.title,
        description=doc.description,
        channel=doc.channel,
        category=doc.category,
        location=common_pb2.Location(
            lat=loc.lat,
            lon=loc.lon,
            address=loc.address or "",
            compound_id=loc.compound_id or "",
        ),
        status=doc.status,
        created_by=doc.created_by,
        created_at=_ts(doc.created_at),
        grant_id=doc.grant_id or "",
        urgency=doc.urgency or "",
        urgency_reasons=list(doc.urgency_reasons or []),
        category_reasons=list(doc.category_reasons or []),
        affected_households=doc.affected_households or 0,
        hazards=list(doc.hazards or []),
        contact=pb.Contact(name=contact.name_masked, phone=contact.phone_masked) if contact else None,
        attachments=[
            pb.Attachment(id=a.id, filename=a.filename, content_type=a.content_type, size=a.size, sha256=a.sha256)
            for a in doc.attachments or []
        ],
        place=pb.Place(
            community_id=place.community_id,
            grid_id=place.grid_id,
            compound_id=place.compound_id,
            community_name_zh=place.community_name_zh,
            grid_name_zh=place.grid_name_zh,
        )
        if place
        else None,
        duplicate_of=doc.duplicate_of or "",
        duplicates=list(doc.duplicates or []),
        history=[
            pb.HistoryEntry(at=_ts(h.at), kind=h.kind, status=h.status, note_zh=h.note_zh, note_en=h.note_en, by=h.by)
            for h in doc.history or []
        ],
        version=doc.version or 1,
        updated_at=_ts(doc.updated_at or doc.created_at),
        category_zh=category.name_zh if category else "",
        open311_status=domain.open311_status(doc.status),
        origin=doc.origin or "",
        filing=filing_to_pb(doc),
    )
    return out


def public_view(issue: pb.Issue) -> pb.Issue:
    """The issue as a caller who is not its handler reads it (domain.FULL_VIEW_ROLES): a filing decision's
    reason and where to turn, never the worker's note nor who decided (nor who took any step, nor whose account
    reported it); a report declined as abusive without its text and files."""
    issue.created_by = ""
    issue.filing.note = ""
    issue.filing.decided_by = ""
    for step in issue.history:
        step.by = ""
    if domain.withheld(issue.status, issue.filing.decline_reason):
        issue.title, issue.description = domain.WITHHELD[0], "{} ({})".format(*domain.WITHHELD)
        del issue.attachments[:]
    return issue


def filing_to_pb(doc: IssueDoc) -> pb.Filing:
    """How the issue was filed (an issue stored before verification existed: directly) and what the reporter
    reads of it: awaiting verification (by when), or declined with the reason."""
    f = doc.filing
    if f is None:
        return pb.Filing(mode="direct")
    out = pb.Filing(
        mode=f.mode or "direct",
        reason=f.reason or "",
        due_at=_ts(f.due_at),
        overdue=f.overdue_at is not None,
        overdue_at=_ts(f.overdue_at),
        decision=f.decision or "",
        decided_by=f.decided_by or "",
        decided_at=_ts(f.decided_at),
        decline_reason=f.decline_reason or "",
        referred_to=f.referred_to or "",
        referred_name=f.referred_name or "",
        duplicate_of=f.duplicate_of or "",
        ask=f.ask or "",
        note=f.note or "",
    )
    if doc.status == domain.STATUS_DECLINED and f.decline_reason:
        zh, en = domain.decline_text(
            domain.FilingDecision(
                domain.DECISION_DECLINE,
                reason=f.decline_reason,
                referred_to=f.referred_to or "",
                referred_name=f.referred_name or "",
                duplicate_of=f.duplicate_of or "",
                ask=f.ask or "",
            )
        )
        out.status_note_zh, out.status_note_en = zh, en
    elif doc.status == domain.STATUS_PENDING_VERIFICATION and f.due_at is not None:
        due = f.due_at if f.due_at.tzinfo else f.due_at.replace(tzinfo=UTC)
        out.status_note_zh, out.status_note_en = domain.pending_text(doc.urgency or "", due)
    return out


def rules_to_pb(rules: Rules) -> pb.ClassificationRules:
    return pb.ClassificationRules(
        categories=[
            pb.Category(
                code=c.code,
                name_zh=c.name_zh,
                name_en=c.name_en,
                group=c.group,
                default_urgency=c.default_urgency,
                keywords=list(c.keywords),
            )
            for c in rules.categories
        ],
        hazards=[pb.HazardRule(code=h.code, name_zh=h.name_zh, urgency=h.urgency) for h in rules.hazards],
        keywords=[pb.KeywordRule(keyword=k.keyword, urgency=k.urgency) for k in rules.keywords],
        major_households=rules.major_households,
        urgent_households=rules.urgent_households,
        duplicate_distance_m=rules.duplicate_distance_m,
        duplicate_window_hours=rules.duplicate_window_hours,
        catch_all_category=rules.catch_all_category,
        version=rules.version,
        filing=[
            pb.FilingRule(mode=f.mode, category=f.category, urgency=f.urgency, deadline_minutes=f.deadline_minutes)
            for f in rules.filing
        ],
    )


def rules_from_pb(msg: pb.ClassificationRules) -> dict[str, Any]:
    return {
        "categories": [
            {
                "code": c.code,
                "name_zh": c.name_zh,
                "name_en": c.name_en,
                "group": c.group,
                "default_urgency": c.default_urgency,
                "keywords": list(c.keywords),
            }
            for c in msg.categories
        ],
        "hazards": [{"code": h.code, "name_zh": h.name_zh, "urgency": h.urgency} for h in msg.hazards],
        "keywords": [{"keyword": k.keyword, "urgency": k.urgency} for k in msg.keywords],
        "major_households": msg.major_households,
        "urgent_households": msg.urgent_households,
        "duplicate_distance_m": msg.duplicate_distance_m,
        "duplicate_window_hours": msg.duplicate_window_hours,
        "catch_all_category": msg.catch_all_category,
        "filing": [
            {"mode": f.mode, "category": f.category, "urgency": f.urgency, "deadline_minutes": f.deadline_minutes}
            for f in msg.filing
        ],
    }


def _time(msg: Any, name: str) -> datetime | None:
    """A request timestamp, or INVALID_ARGUMENT naming the field when it is not a valid time."""
    if not msg.HasField(name):
        return None
    ts: Timestamp = getattr(msg, name)
    if not 0 <= ts.nanos <= 999_999_999:
        raise InvalidArgument(f"{name} has invalid nanos {ts.nanos}", field=name)
    try:
        at = ts.ToDatetime(tzinfo=UTC)
    except (ValueError, OverflowError, OSError):
        raise InvalidArgument(f"{name} is not a valid time", field=name) from None
    return at


def _principal() -> Principal:
    principal = current_principal.get()
    assert principal is not None  # the interceptor refuses calls without one
    return principal


class IntakeServicer(pb_grpc.IntakeServiceServicer):
    def __init__(self, placer: Placer, protector: Protector) -> None:
        self.placer = placer
        self.protector = protector

    def CreateIssue(self, request: pb.CreateIssueRequest, context: grpc.ServicerContext) -> pb.Issue:
        principal = _principal()
        # Authority first: who may file on this channel is decided before the contents are looked at.
        grant_id = domain.check_channel(request.channel, request.grant_id, principal.role, principal.grant_id)
        loc = request.location
        if len(request.idempotency_key) > IDEMPOTENCY_KEY_MAX:
            raise InvalidArgument(f"idempotency_key: at most {IDEMPOTENCY_KEY_MAX} characters", field="idempotency_key")
        contact = (
            domain.check_contact(request.contact.name, request.contact.phone) if request.HasField("contact") else None
        )
        new = domain.validate_new_issue(
            request.title,
            request.description,
            request.channel,
            request.category,
            domain.Location(
                lat=loc.lat if loc.HasField("lat") else None,
                lon=loc.lon if loc.HasField("lon") else None,
                address=loc.address,
                compound_id=loc.compound_id,
            ),
            hazards=list(request.hazards),
            affected_households=request.affected_households,
            contact=contact,
            attachments=[domain.AttachmentIn(a.filename, a.content_type, a.content) for a in request.attachments],
        )
        origin = request.origin.strip()
        if len(origin) > ORIGIN_MAX or any(c.isspace() for c in origin):
            raise InvalidArgument(
                f"origin: at most {ORIGIN_MAX} characters, no spaces (来源格式不正确)", field="origin"
            )
        doc, rules = handlers.create_issue(
            new,
            principal,
            request.idempotency_key,
            grant_id=grant_id,
            origin=origin,
            placer=self.placer,
            protector=self.protector,
        )
        out = issue_to_pb(doc, rules)
        # 查询码: a report by a resident or for one (not a meeting's action item, nor a department's task).
        if not origin and not grant_id:
            out.follow_code = handlers.hand_out_follow_code(doc.id)
        return out

    def CheckReporter(self, request: pb.CheckReporterRequest, context: grpc.ServicerContext) -> pb.ReporterCheck:
        doc = handlers.check_reporter(request.issue_id.strip(), request.follow_code, _principal())
        return pb.ReporterCheck(
            issue_id=doc.id,
            community_id=handlers.community_of(doc),
            by="code" if request.follow_code.strip() else "resident",
        )

    def GetIssue(self, request: pb.GetIssueRequest, context: grpc.ServicerContext) -> pb.Issue:
        issue = issue_to_pb(handlers.get_issue(request.id), handlers.current_rules())
        return issue if _principal().role in domain.FULL_VIEW_ROLES else public_view(issue)

    def ListIssues(self, request: pb.ListIssuesRequest, context: grpc.ServicerContext) -> pb.ListIssuesResponse:
        principal = _principal()
        domain.require_role(principal.role, domain.LIST_ROLES, "list issues", principal.grant_id)
        flt = domain.IssueFilter(
            ids=tuple(request.ids),
            status=request.status.strip(),
            category=request.category.strip(),
            urgency=request.urgency.strip(),
            channel=request.channel.strip(),
            community_id=community.list_filter(request.community_id.strip(), principal),
            grid_id=request.grid_id.strip(),
            created_from=_time(request, "created_from"),
            created_to=_time(request, "created_to"),
            text=request.text,
            verification_overdue=request.verification_overdue,
        )
        docs, token, rules = handlers.list_issues(flt, request.page_size, request.page_token)
        return pb.ListIssuesResponse(issues=[issue_to_pb(d, rules) for d in docs], next_page_token=token)

    def CountIssues(self, request: pb.CountIssuesRequest, context: grpc.ServicerContext) -> pb.CountIssuesResponse:
        principal = _principal()
        domain.require_role(principal.role, domain.LIST_ROLES, "count issues", principal.grant_id)
        counts = handlers.count_issues(community.list_filter(request.community_id.strip(), principal))
        return pb.CountIssuesResponse(by_status=counts, total=sum(counts.values()))

    def GetIssueStats(self, request: pb.GetIssueStatsRequest, context: grpc.ServicerContext) -> pb.IssueStats:
        principal = _principal()
        domain.require_role(principal.role, domain.STATS_ROLES, "read the dashboard figures")
        asked = community.list_filter(request.community_id.strip(), principal)  # a community worker: its own
        stats, first, last, rules = handlers.issue_stats(asked, request.from_day, request.to_day)
        open_issues = []
        for (code, status), n in sorted(stats.open_by_category.items()):
            category = rules.category(code)
            open_issues.append(
                pb.CategoryStatusCount(
                    category=code,
                    category_zh=category.name_zh if category else "",
                    category_en=category.name_en if category else "",
                    status=status,
                    count=n,
                )
            )
        return pb.IssueStats(
            open_issues=open_issues,
            days=days_to_pb(stats.days, first, last),
            spans=[span_to_pb(m, stats.spans[m]) for m in readmodel.SPAN_MEASURES],
            hot_spots=[pb.GridCount(grid_id=g, count=n) for g, n in stats.hot_spots],
        )

    def GetTopicCounts(self, request: pb.GetIssueStatsRequest, context: grpc.ServicerContext) -> pb.TopicCounts:
        principal = _principal()
        domain.require_role(principal.role, domain.STATS_ROLES, "read the hot topics' figures")
        asked = community.list_filter(request.community_id.strip(), principal)  # a community worker: its own
        first, last = rollups.check_window(request.from_day, request.to_day)
        found = readmodel.topic_counts(asked, first, last)
        return pb.TopicCounts(
            topics=[
                pb.TopicCount(kind=kind, topic=topic, count=n)
                for kind, topics in sorted(found.items())
                for topic, n in sorted(topics.items())
            ]
        )

    def ReclassifyIssue(self, request: pb.ReclassifyIssueRequest, context: grpc.ServicerContext) -> pb.Issue:
        doc, rules = handlers.reclassify_issue(
            request.id, request.urgency, request.category, request.reason, request.version, _principal()
        )
        return issue_to_pb(doc, rules)

    def DecideFiling(self, request: pb.DecideFilingRequest, context: grpc.ServicerContext) -> pb.Issue:
        doc, rules = filing.decide_filing(
            request.id,
            request.decision,
            _principal(),
            reason=request.reason,
            referred_to=request.referred_to,
            referred_name=request.referred_name,
            duplicate_of=request.duplicate_of,
            ask=request.ask,
            note=request.note,
            version=request.version,
        )
        return issue_to_pb(doc, rules)

    def RevealContact(self, request: pb.RevealContactRequest, context: grpc.ServicerContext) -> pb.Contact:
        name, phone = handlers.reveal_contact(request.id, _principal(), self.protector)
        return pb.Contact(name=name, phone=phone)

    def GetAttachment(self, request: pb.GetAttachmentRequest, context: grpc.ServicerContext) -> pb.AttachmentContent:
        doc = handlers.get_attachment(
            request.issue_id, request.attachment_id, public=_principal().role not in domain.FULL_VIEW_ROLES
        )
        return pb.AttachmentContent(
            attachment=pb.Attachment(
                id=doc.id, filename=doc.filename, content_type=doc.content_type, size=doc.size, sha256=doc.sha256
            ),
            content=doc.content,
        )

    def GetClassificationRules(
        self, request: pb.GetClassificationRulesRequest, context: grpc.ServicerContext
    ) -> pb.ClassificationRules:
        return rules_to_pb(handlers.current_rules())

    def PutClassificationRules(
        self, request: pb.ClassificationRules, context: grpc.ServicerContext
    ) -> pb.ClassificationRules:
        return rules_to_pb(handlers.put_rules(rules_from_pb(request), request.version, _principal()))


def register(server: grpc.Server, placer: Placer, protector: Protector) -> list[str]:
    pb_grpc.add_IntakeServiceServicer_to_server(IntakeServicer(placer, protector), server)
    return [pb.DESCRIPTOR.services_by_name["IntakeService"].full_name]
