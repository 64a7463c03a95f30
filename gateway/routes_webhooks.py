"""Webhook registrations of a tenant: /api/v1/tenants/<tenant>/webhooks -> hongling.dispatch.v1.WebhookService.

    POST   webhooks                          {url, event_types, description} -> 201 {webhook, secret}
    GET    webhooks                          the tenant's registrations (never a secret)
    GET    webhooks/{id}
    PUT    webhooks/{id}/active              {active: true|false}: pause or resume deliveries
    DELETE webhooks/{id}                     -> 204; its pending deliveries stop, its history stays readable
    GET    webhooks/{id}/deliveries?status=&page_size=&page_token=   newest first, every attempt
    GET    /api/v1/webhooks?tenant=                  ops: a tenant's registrations, read-only
    GET    /api/v1/webhooks/{id}/deliveries?tenant=  ops: its deliveries, read-only

The signing secret is in the answer to the POST only (store it in the receiver; the answer is not cached):
every later answer shows `secret_hint`, its first characters, never the secret. How receivers verify a
delivery is protos/hongling/dispatch/v1/webhooks.proto. Subdistrict admins manage their tenant's
registrations; ops read them on the district-wide routes (gateway/policy.py gives ops no tenant-scoped route).
"""

from __future__ import annotations

from flask import Blueprint, Response, jsonify
from hongling.dispatch.v1 import webhooks_pb2 as pb
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from gateway.app import json_body
from gateway.calls import clients, tenant_call
from gateway.protojson import to_json
from gateway.query import PAGE_TOKEN, SCOPE_TENANT, args, page_size, query, text
from gateway.routes_dispatch import DOCS, Doc, parse

bp = Blueprint("webhooks", __name__)
WEBHOOKS = "/api/v1/tenants/<tenant>/webhooks"
DISTRICT = "/api/v1/webhooks"
EVENT_NAMES = (
    "WhistleBlown",
    "UnitReportedIn",
    "TaskClaimed",
    "TaskAssigned",
    "TaskStatusChanged",
    "DeadlineMissed",
    "DeadlineReminder",
    "Escalated",
)


class WebhookIn(BaseModel):
    """A receiver: an http(s) URL and the dispatch events it wants (short names, or full ones such as
    hongling.events.v1.WhistleBlown)."""

    model_config = ConfigDict(extra="forbid")
    url: StrictStr
    event_types: list[StrictStr] = Field(min_length=1, max_length=len(EVENT_NAMES) * 2)
    description: StrictStr = ""


class ActiveIn(BaseModel):
    """false pauses deliveries to the registration (pending retries stop); true resumes them."""

    model_config = ConfigDict(extra="forbid")
    active: StrictBool


@bp.after_request
def _no_store(resp: Response) -> Response:
    resp.headers["Cache-Control"] = "no-store"  # the POST's answer carries the secret
    return resp


DELIVERIES = (
    text("status", "状态 Only deliveries in this status", enum=("pending", "delivered", "failed", "cancelled")),
    page_size(200, 50),  # the webhook registry's pages (services/dispatch/webhooks.py)
    PAGE_TOKEN,
)


def _deliveries(tenant: str, webhook_id: str) -> Response:
    q = args()
    req = pb.ListWebhookDeliveriesRequest(
        webhook_id=webhook_id, status=q["status"], page_size=q["page_size"], page_token=q["page_token"]
    )
    with tenant_call(tenant):
        resp = clients().webhooks.ListWebhookDeliveries(req)
    return jsonify(
        {"deliveries": [to_json(d) for d in resp.deliveries], "next_page_token": resp.next_page_token or None}
    )


def _list(tenant: str) -> Response:
    with tenant_call(tenant):
        resp = clients().webhooks.ListWebhooks(pb.ListWebhooksRequest())
    return jsonify({"webhooks": [to_json(w) for w in resp.webhooks]})


@bp.post(WEBHOOKS)
def register_webhook(tenant: str) -> tuple[Response, int]:
    """登记推送地址 Register a URL for chosen dispatch events; the answer shows the signing secret, this once

    Event types: WhistleBlown, UnitReportedIn, TaskClaimed, TaskAssigned, TaskStatusChanged, DeadlineMissed,
    DeadlineReminder, Escalated. Each delivery is a CloudEvent (JSON), signed as Standard Webhooks
    (webhook-id = the delivery id, the same on every retry; webhook-timestamp; webhook-signature
    v1,<base64 HMAC-SHA256> over "<id>.<timestamp>.<body>"; any Standard Webhooks library verifies it with
    `secret`), retried with backoff until it is answered 2xx. X-Hongling-Signature (t=<unix>,v1=<hex>) is
    still sent, deprecated: removed in 0.2.0. Store `secret` (whsec_…) now: no later answer shows it
    (密钥只显示这一次)."""
    data: WebhookIn = parse(WebhookIn, json_body())
    req = pb.RegisterWebhookRequest(url=data.url, event_types=data.event_types, description=data.description)
    with tenant_call(tenant):
        created = clients().webhooks.RegisterWebhook(req)
    resp = jsonify({"webhook": to_json(created.webhook), "secret": created.secret})
    resp.headers["Location"] = f"/api/v1/tenants/{tenant}/webhooks/{created.webhook.id}"
    return resp, 201


@bp.get(WEBHOOKS)
def list_webhooks(tenant: str) -> Response:
    """推送地址列表 The tenant's webhook registrations (secrets never shown: secret_hint only)"""
    return _list(tenant)


@bp.get(f"{WEBHOOKS}/<webhook_id>")
def get_webhook(tenant: str, webhook_id: str) -> Response:
    """查看推送地址 One registration: URL, event types, active, who made it (secret_hint only)"""
    with tenant_call(tenant):
        found = clients().webhooks.GetWebhook(pb.GetWebhookRequest(id=webhook_id))
    return jsonify(to_json(found))


@bp.put(f"{WEBHOOKS}/<webhook_id>/active")
def set_webhook_active(tenant: str, webhook_id: str) -> Response:
    """暂停/恢复推送 Pause (active false: no more deliveries, pending retries stop) or resume a registration"""
    data: ActiveIn = parse(ActiveIn, json_body())
    with tenant_call(tenant):
        found = clients().webhooks.SetWebhookActive(pb.SetWebhookActiveRequest(id=webhook_id, active=data.active))
    return jsonify(to_json(found))


@bp.delete(f"{WEBHOOKS}/<webhook_id>")
def delete_webhook(tenant: str, webhook_id: str) -> tuple[str, int]:
    """删除推送地址 Remove a registration: its pending deliveries stop, its secret is wiped, its delivery
    history stays readable"""
    with tenant_call(tenant):
        clients().webhooks.DeleteWebhook(pb.DeleteWebhookRequest(id=webhook_id))
    return "", 204


@bp.get(f"{WEBHOOKS}/<webhook_id>/deliveries")
@query(*DELIVERIES)
def list_deliveries(tenant: str, webhook_id: str) -> Response:
    """推送记录 Deliveries to one registration, newest first, with every attempt (status code, error, time)

    status: pending, delivered, failed or cancelled; page_size 1..200 (50), page_token."""
    return _deliveries(tenant, webhook_id)


@bp.get(DISTRICT)
@query(SCOPE_TENANT)
def list_webhooks_district() -> Response:
    """推送地址列表（运维只读） A tenant's webhook registrations for ops, read-only: ?tenant= (in the token's scope)"""
    return _list(args()["tenant"])


@bp.get(f"{DISTRICT}/<webhook_id>/deliveries")
@query(SCOPE_TENANT, *DELIVERIES)
def list_deliveries_district(webhook_id: str) -> Response:
    """推送记录（运维只读） A registration's deliveries for ops, read-only: ?tenant= (in the token's scope)"""
    return _deliveries(args()["tenant"], webhook_id)


DOCS.update(
    {
        "webhooks.register_webhook": Doc(
            pb.RegisterWebhookResponse, 201, WebhookIn, errors=(400,), headers=("Location",)
        ),
        "webhooks.list_webhooks": Doc(pb.Webhook, list_key="webhooks", paged=False),
        "webhooks.get_webhook": Doc(pb.Webhook, errors=(404,)),
        "webhooks.set_webhook_active": Doc(pb.Webhook, body=ActiveIn, errors=(400, 404)),
        "webhooks.delete_webhook": Doc(None, 204, errors=(404,)),
        "webhooks.list_deliveries": Doc(pb.WebhookDelivery, list_key="deliveries", errors=(400, 404)),
        "webhooks.list_webhooks_district": Doc(
            pb.Webhook, list_key="webhooks", paged=False, errors=(400, 404, 429, 503)
        ),
        "webhooks.list_deliveries_district": Doc(
            pb.WebhookDelivery,
            list_key="deliveries",
            errors=(400, 404, 429, 503),
        ),
    }
)
