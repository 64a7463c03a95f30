"""gRPC stubs the gateway uses to reach the services (deadlines, retries and identity via grpc_client)."""

from __future__ import annotations

from dataclasses import dataclass

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hongling.dispatch.v1 import dispatch_pb2_grpc, webhooks_pb2_grpc
from hongling.intake.v1 import intake_pb2_grpc
from hongling.org.v1 import org_pb2_grpc

from services.common.grpc_client import make_channel
from services.common.settings import SERVICES, Settings


@dataclass
class Clients:
    channels: dict[str, grpc.Channel]
    intake: intake_pb2_grpc.IntakeServiceStub
    dispatch: dispatch_pb2_grpc.DispatchServiceStub
    org: org_pb2_grpc.OrgServiceStub
    webhooks: webhooks_pb2_grpc.WebhookServiceStub  # served by the dispatch process

    @classmethod
    def connect(cls, settings: Settings) -> Clients:
        names = {
            "org": ["hongling.org.v1.OrgService"],
            "intake": ["hongling.intake.v1.IntakeService"],
            "dispatch": ["hongling.dispatch.v1.DispatchService", "hongling.dispatch.v1.WebhookService"],
            "evaluation": [
                "hongling.evaluation.v1.VerificationService",
                "hongling.evaluation.v1.RatingService",
                "hongling.evaluation.v1.EvaluationService",
            ],
            "publication": ["hongling.publication.v1.PublicationService"],
            "alliance": [
                "hongling.alliance.v1.MeetingService",
                "hongling.alliance.v1.PostService",
                "hongling.alliance.v1.ActivityService",
                "hongling.alliance.v1.ResourceService",
                "hongling.alliance.v1.TimeBankService",
                "hongling.alliance.v1.FundService",
            ],
        }
        channels = {
            s: make_channel(
                settings.address(s),
                names[s],
                secret=settings.principal_secret,
                caller="gateway",
                default_timeout=settings.call_timeout_seconds,
            )
            for s in SERVICES
        }
        return cls(
            channels=channels,
            intake=intake_pb2_grpc.IntakeServiceStub(channels["intake"]),
            dispatch=dispatch_pb2_grpc.DispatchServiceStub(channels["dispatch"]),
            org=org_pb2_grpc.OrgServiceStub(channels["org"]),
            webhooks=webhooks_pb2_grpc.WebhookServiceStub(channels["dispatch"]),
        )

    def health(self, timeout: float = 1.0) -> dict[str, str]:
        """Each service's grpc.health.v1 status (SERVING, NOT_SERVING or the error)."""
        out = {}
        for name, channel in self.channels.items():
            try:
                resp = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=timeout)
                out[name] = health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)
            except grpc.RpcError as exc:
                out[name] = exc.code().name
        return out

    def close(self) -> None:
        for ch in self.channels.values():
            ch.close()
