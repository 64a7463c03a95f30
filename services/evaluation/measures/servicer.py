"""EvaluationService gRPC servicer (measures, boards, weights, rebuild): protobuf <-> handlers, nothing else."""

from __future__ import annotations

from typing import Any

import grpc
from hongling.evaluation.v1 import evaluation_pb2 as pb
from hongling.evaluation.v1 import evaluation_pb2_grpc as pb_grpc

from services.evaluation.measures import domain, handlers

SERVICE = "hongling.evaluation.v1.EvaluationService"
FORMULA_TEXT = (
    "分项收缩率 s = (分子 + k·均值) ÷ (分母 + k)；得分 = 100 × Σ 权重·s ÷ Σ 权重；同分按工作量多者、再按编号排序。"
    " (shrunk rate s = (num + k·mean) / (den + k); score = 100 · Σ w·s / Σ w; ties: larger workload, then id)"
)


def _values(values: list[domain.Value]) -> list[pb.MeasureValue]:
    out = []
    for v in values:
        m = domain.MEASURES[v.measure]
        out.append(
            pb.MeasureValue(
                key=v.measure,
                name_zh=m.name_zh,
                name_en=m.name_en,
                numerator=v.numerator,
                denominator=v.denominator,
                rate=v.rate or 0.0,
                has_rate=v.rate is not None,
                definition=m.definition,
                lower_is_better=m.lower_is_better,
            )
        )
    return out


def _subject(view: handlers.SubjectView) -> pb.SubjectMeasures:
    return pb.SubjectMeasures(
        subject=view.subject,
        subject_kind=view.subject.split(":", 1)[0],
        name_zh=view.name_zh,
        period=view.period,
        community_id=view.community_id,
        measures=_values(view.values),
        composite=view.composite or 0.0,
        has_composite=view.composite is not None,
    )


def _entry(e: domain.Entry) -> pb.BoardEntry:
    kind, _, ident = e.subject.partition(":")
    return pb.BoardEntry(
        rank=e.rank,
        subject_kind=kind,
        subject_id=ident,
        name_zh=e.name_zh,
        score=e.score,
        workload=e.workload,
        explanation=e.explanation(),
        parts=[
            pb.ExplainedPart(
                component=p.component,
                name_zh=domain.MEASURES[p.component].name_zh,
                name_en=domain.MEASURES[p.component].name_en,
                numerator=p.numerator,
                denominator=p.denominator,
                mean=p.mean,
                shrunk=p.shrunk,
                weight=p.weight,
                points=p.points,
            )
            for p in e.parts
        ],
    )


def _settings(s: domain.Settings, version: int, at: Any) -> pb.MeasureSettings:
    return pb.MeasureSettings(
        weights=[
            pb.Weight(
                component=k,
                name_zh=domain.MEASURES[k].name_zh,
                name_en=domain.MEASURES[k].name_en,
                weight=float(s.weights.get(k, 0)),
            )
            for k in domain.COMPONENTS
        ],
        prior=s.prior,
        min_workload=s.min_workload,
        grace_hours=s.grace_hours,
        version=version,
        updated_at=handlers.frozen_at_ts(at),
        formula_text=FORMULA_TEXT,
    )


class EvaluationServicer(pb_grpc.EvaluationServiceServicer):
    def GetMeasures(self, request: pb.GetMeasuresRequest, context: grpc.ServicerContext) -> pb.SubjectMeasures:
        return _subject(handlers.get_measures(request.subject, request.period, request.community_id))

    def ListMeasures(self, request: pb.ListMeasuresRequest, context: grpc.ServicerContext) -> pb.ListMeasuresResponse:
        views, token = handlers.list_measures(
            request.period, request.community_id, request.subject_kind.strip(), request.page_size, request.page_token
        )
        return pb.ListMeasuresResponse(subjects=[_subject(v) for v in views], next_page_token=token)

    def GetBoards(self, request: pb.GetBoardsRequest, context: grpc.ServicerContext) -> pb.BoardSet:
        found = handlers.board_read(
            request.quarter,
            request.community_id,
            request.board.strip(),
            request.page_size,
            request.page_token,
            request.version,
        )
        head = found["head"] or {}
        out = pb.BoardSet(
            quarter=found["quarter"],
            community_id="" if found["scope"] == domain.ALL else found["scope"],
            status=found["status"],
            version=int(head.get("version") or 0),
            corrects_version=int(head.get("corrects_version") or 0),
            changes=head.get("changes") or "",
            formula=domain.FORMULA,
            formula_text=FORMULA_TEXT,
            frozen_at=handlers.frozen_at_ts(head.get("frozen_at")),
            versions=found["versions"],
        )
        for kind, (entries, _rows, more) in found["boards"].items():
            zh, en = domain.BOARDS[kind]
            out.boards.append(
                pb.Board(
                    kind=kind,
                    name_zh=zh,
                    name_en=en,
                    entries=[_entry(e) for e in entries],
                    next_page_token=str(entries[-1].rank) if more and entries else "",
                )
            )
        return out

    def GetWeights(self, request: pb.GetWeightsRequest, context: grpc.ServicerContext) -> pb.MeasureSettings:
        handlers.require_role(handlers.READERS, "read the measures' weights")
        return _settings(*handlers.settings_of())

    def PutWeights(self, request: pb.MeasureSettings, context: grpc.ServicerContext) -> pb.MeasureSettings:
        """The whole settings (weights not named keep their defaults; min_workload 0 is the default 1)."""
        weights = {w.component.strip(): w.weight for w in request.weights}
        return _settings(
            *handlers.put_settings(
                weights,
                request.prior,
                request.min_workload or domain.DEFAULT_MIN_WORKLOAD,
                request.grace_hours,
                int(request.version),
            )
        )

    def RebuildQuarter(
        self, request: pb.RebuildQuarterRequest, context: grpc.ServicerContext
    ) -> pb.RebuildQuarterResponse:
        r = handlers.rebuild_quarter(request.quarter.strip().upper(), request.apply)
        return pb.RebuildQuarterResponse(**r)


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_EvaluationServiceServicer_to_server(EvaluationServicer(), server)
    return [SERVICE]
