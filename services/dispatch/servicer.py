"""DispatchService gRPC servicer."""

from __future__ import annotations

import grpc
from hongling.dispatch.v1 import dispatch_pb2 as pb
from hongling.dispatch.v1 import dispatch_pb2_grpc as pb_grpc

from services.common.context import require_tenant
from services.dispatch import handlers
from services.dispatch.documents import TaskDoc


def task_to_pb(doc: TaskDoc) -> pb.Task:
    out = pb.Task(id=doc.id, tenant=require_tenant(), issue_id=doc.issue_id, status=doc.status)
    out.created_at.FromDatetime(doc.created_at)
    return out


class DispatchServicer(pb_grpc.DispatchServiceServicer):
    def GetTask(self, request: pb.GetTaskRequest, context: grpc.ServicerContext) -> pb.Task:
        return task_to_pb(handlers.get_task(request.id))

    def GetTaskForIssue(self, request: pb.GetTaskForIssueRequest, context: grpc.ServicerContext) -> pb.Task:
        return task_to_pb(handlers.get_task_for_issue(request.issue_id))


def register(server: grpc.Server) -> list[str]:
    pb_grpc.add_DispatchServiceServicer_to_server(DispatchServicer(), server)
    return [pb.DESCRIPTOR.services_by_name["DispatchService"].full_name]
