"""Measures and the quarterly boards for the portals: /api/v1/tenants/<tenant>/evaluation/... ->
EvaluationService (hongling.evaluation.v1, services/evaluation/measures).

    GET  evaluation/measures?subject=&period=&community_id=          one subject's measures (响应率, 解决率, 满意率 …)
    GET  evaluation/measures/subjects?subject_kind=&period=&community_id=   the helpers of a kind, paged
    GET  evaluation/rates?community_id=                               the three rates, month and quarter (dashboard)
    GET  evaluation/boards?quarter=&community_id=&board=&version=     the four boards (四榜) with explanations
    GET|PUT evaluation/weights                                        the composite's weights, k, grace (PUT: If-Match)
    POST /api/v1/evaluation/rebuilds {tenant, quarter, apply}         recount a quarter from its facts (ops)

A community worker reads its own community's measures and boards (naming another is 403
`community_out_of_scope`; without a community_id it gets its own). Who may call what is gateway/policy.py.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from flask import Blueprint, Response, current_app, jsonify, request
from hongling.evaluation.v1 import evaluation_pb2 as pb
from hongling.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictStr

from gateway import query as query_params
from gateway.app import json_body
from gateway.calls import tenant_call
from gateway.community import list_filter
from gateway.protojson import StrictInt32, StrictInt64, to_json
from gateway.query import PAGE_TOKEN, args, integer, matching, page_size, quarter, query, text
from gateway.routes_dispatch import DOCS, Doc, message, parse
from gateway.routes_org import if_match_version

bp = Blueprint("measures", __name__)
BASE = "/api/v1/tenants/<tenant>/evaluation"
COMMUNITY = text("community_id", "社区 Community; empty: the whole tenant (a community worker: its own)")
PERIOD = matching(
    "period",
    "期间 A month YYYY-MM or a quarter YYYYQn (Asia/Shanghai); empty: this month",
    query_params.PERIOD,
    "期间格式应为YYYY-MM或YYYYQn",
    "must be a month YYYY-MM or a quarter YYYYQn",
)
SUBJECT = "^(tenant|(member_unit|person|team|community):[A-Za-z0-9][A-Za-z0-9._:@-]{0,119})$"
SHANGHAI = ZoneInfo("Asia/Shanghai")
BOARDS = ("red_property", "social_org", "party_member", "volunteer")


def stub() -> pb_grpc.EvaluationServiceStub:
    return pb_grpc.EvaluationServiceStub(current_app.extensions["hongling.clients"].channels["evaluation"])


class WeightIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    component: StrictStr = Field(description="response | resolution | satisfaction | on_time | reopen | duties")
    weight: StrictFloat | StrictInt64 = Field(description="0..100; the score divides by the weights' sum")


class WeightsIn(BaseModel):
    """The composite's settings: weights (those not named keep their defaults), the prior k of the Bayesian
    average, the entrants' minimum workload and the freeze's grace after a quarter ends."""

    model_config = ConfigDict(extra="forbid")
    weights: list[WeightIn] = Field(default_factory=list, max_length=6)
    prior: StrictFloat | StrictInt64 = Field(5, description="k (default 5): how many facts' worth of the mean")
    min_workload: StrictInt32 = Field(1, description="facts an entrant needs to be ranked (default 1)")
    grace_hours: StrictInt32 = Field(
        72, description="hours after a quarter's end before its boards freeze (default 72)"
    )


class RebuildIn(BaseModel):
    """A quarter to recount from its fact rows; apply: replace the counters that differ."""

    model_config = ConfigDict(extra="forbid")
    tenant: StrictStr = Field(description="街道/镇 The tenant (in the token's scope)")
    quarter: StrictStr = Field(description="YYYYQn, e.g. 2026Q3")
    apply: StrictBool = False


class Rate(BaseModel):
    key: str
    name_zh: str
    name_en: str
    numerator: float
    denominator: float
    rate: float | None = Field(description="null: no facts in the period")


class RatesOut(BaseModel):
    """三率 The three rates of a community or the tenant, this month and this quarter (Asia/Shanghai)."""

    community_id: str | None = Field(description="null: the whole tenant")
    month: str
    quarter: str
    this_month: list[Rate]
    this_quarter: list[Rate]


@bp.get(f"{BASE}/measures")
@query(
    matching(
        "subject",
        "评价对象 member_unit:<id>, person:<id>, team:<id>, community:<id> or tenant; empty: the community or tenant",
        SUBJECT,
        "评价对象格式不正确",
        "must be member_unit:<id>, person:<id>, team:<id>, community:<id> or tenant",
    ),
    PERIOD,
    COMMUNITY,
)
def get_measures(tenant: str) -> Response:
    """评价指标 One subject's measures for a month or quarter: the three rates, on-time, reopen, whistle rate, duties

    Each measure with its numerator, denominator and definition, and the composite with the tenant's weights.
    Read from the counters the consumer keeps (one primary-key range), never recomputed from the facts."""
    q = args()
    community_id = list_filter(q["community_id"])
    subject = q["subject"] or (f"community:{community_id}" if community_id else "tenant")
    req = pb.GetMeasuresRequest(subject=subject, period=q["period"], community_id=community_id)
    with tenant_call(tenant):
        return message(stub().GetMeasures(req), etag=False)


@bp.get(f"{BASE}/measures/subjects")
@query(
    text("subject_kind", "对象类型 member_unit, person or team", enum=("member_unit", "person", "team")),
    PERIOD,
    COMMUNITY,
    page_size(200, 50),
    PAGE_TOKEN,
)
def list_measures(tenant: str) -> Response:
    """指标列表 The helpers of a kind with facts in the period, by id, each with its measures"""
    q = args()
    req = pb.ListMeasuresRequest(
        period=q["period"],
        community_id=list_filter(q["community_id"]),
        subject_kind=q["subject_kind"] or "member_unit",
        page_size=q["page_size"],
        page_token=q["page_token"],
    )
    with tenant_call(tenant):
        resp = stub().ListMeasures(req)
    return jsonify({"subjects": [to_json(s) for s in resp.subjects], "next_page_token": resp.next_page_token or None})


RATES = ("response", "resolution", "satisfaction")


@bp.get(f"{BASE}/rates")
@query(COMMUNITY)
def dashboard_rates(tenant: str) -> Response:
    """三率 Response, resolution and satisfaction rates this month and quarter (the dashboard's)"""
    community_id = list_filter(args()["community_id"])
    subject = f"community:{community_id}" if community_id else "tenant"
    now = datetime.now(SHANGHAI)
    month, quarter = f"{now.year:04d}-{now.month:02d}", f"{now.year:04d}Q{(now.month - 1) // 3 + 1}"
    with tenant_call(tenant):
        found = {
            p: stub().GetMeasures(pb.GetMeasuresRequest(subject=subject, period=p, community_id=community_id))
            for p in (month, quarter)
        }

    def rates(m: pb.SubjectMeasures) -> list[Rate]:
        return [
            Rate(
                key=v.key,
                name_zh=v.name_zh,
                name_en=v.name_en,
                numerator=v.numerator,
                denominator=v.denominator,
                rate=v.rate if v.has_rate else None,
            )
            for v in m.measures
            if v.key in RATES
        ]

    out = RatesOut(
        community_id=community_id or None,
        month=month,
        quarter=quarter,
        this_month=rates(found[month]),
        this_quarter=rates(found[quarter]),
    )
    return jsonify(out.model_dump(mode="json"))


@bp.get(f"{BASE}/boards")
@query(
    quarter("quarter", "季度 Asia/Shanghai; empty: this quarter (provisional)"),
    COMMUNITY,
    text(
        "board",
        "榜单 red_property 红色物业光荣榜, social_org 社会组织人气榜, party_member 党员先锋榜, volunteer 志愿者明星榜",
        enum=BOARDS,
    ),
    integer("page_size", "每榜条数 Entries per board, 1..200", lo=1, hi=200, default=20),
    PAGE_TOKEN,
    integer("version", "版本 A frozen version; 0: the latest", lo=0, hi=100000, default=0),
)
def get_boards(tenant: str) -> Response:
    """四榜 The quarter's four boards with each entrant's score explained (which facts, which weights)

    A closed quarter's boards are frozen (status frozen, version; corrections are new versions stating the
    difference); the current quarter's are provisional. page_token pages one board (name it with board)."""
    q = args()
    req = pb.GetBoardsRequest(
        quarter=q["quarter"],
        community_id=list_filter(q["community_id"]),
        board=q["board"],
        page_size=q["page_size"],
        page_token=q["page_token"],
        version=q["version"],
    )
    with tenant_call(tenant):
        return message(stub().GetBoards(req), etag=False)


@bp.get(f"{BASE}/weights")
def get_weights(tenant: str) -> Response:
    """评分权重 The composite's weights, k, minimum workload and freeze grace

    Defaults: response .20, resolution .25, satisfaction .25, on-time .10, no reopen .10, duties .10; k 5."""
    with tenant_call(tenant):
        return message(stub().GetWeights(pb.GetWeightsRequest()))


@bp.put(f"{BASE}/weights")
def put_weights(tenant: str) -> Response:
    """设置评分权重 Set the weights, k, minimum workload and grace (If-Match: the version read; a stale one is 412)"""
    version = if_match_version(request.headers.get("If-Match"))
    data: WeightsIn = parse(WeightsIn, json_body())
    req = pb.MeasureSettings(
        weights=[pb.Weight(component=w.component.strip(), weight=float(w.weight)) for w in data.weights],
        prior=float(data.prior),
        min_workload=data.min_workload,
        grace_hours=data.grace_hours,
        version=version,
    )
    with tenant_call(tenant, conditional=True):
        return message(stub().PutWeights(req))


@bp.post("/api/v1/evaluation/rebuilds")
def rebuild_quarter() -> Response:
    """重算季度（运维） Recount a tenant's quarter from its fact rows and compare (apply: replace those that differ)

    A district-wide route (ops get no tenant-scoped route, gateway/policy.py): the body names the tenant, which
    must be in the token's scope."""
    data: RebuildIn = parse(RebuildIn, json_body())
    with tenant_call(data.tenant.strip()):
        return message(
            stub().RebuildQuarter(pb.RebuildQuarterRequest(quarter=data.quarter, apply=data.apply)), etag=False
        )


E = "measures."
DOCS.update(
    {
        f"{E}get_measures": Doc(pb.SubjectMeasures, errors=(400, 404)),
        f"{E}list_measures": Doc(pb.SubjectMeasures, list_key="subjects", errors=(400,)),
        f"{E}dashboard_rates": Doc(RatesOut, errors=(400,)),
        f"{E}get_boards": Doc(pb.BoardSet, errors=(400, 404)),
        f"{E}get_weights": Doc(pb.MeasureSettings, headers=("ETag",)),
        f"{E}put_weights": Doc(
            pb.MeasureSettings, body=WeightsIn, if_match="required", errors=(400, 412, 428), headers=("ETag",)
        ),
        f"{E}rebuild_quarter": Doc(pb.RebuildQuarterResponse, body=RebuildIn, errors=(400, 404)),
    }
)
