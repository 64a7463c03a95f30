"""python -m gateway.frontdoor: the gRPC front door for district-department systems (区直部门系统接入).

The gateway's second door, beside the HTTP API, serving hongling.frontdoor.v1.DepartmentGateway
(protos/hongling/frontdoor/v1/frontdoor.proto) on HONGLING_FRONTDOOR_PORT (port base + 50), with the
standard gRPC health service and server reflection. It applies the HTTP gateway's rules, not a copy of
them:

- who is calling: metadata `authorization: Bearer <token>`, checked by gateway/identity.py `identify`
  against the same API token file and people's sessions as the HTTP gateway (401 -> UNAUTHENTICATED);
- who may call what: gateway/policy.py POLICY under "frontdoor.<Method>" (a method without a line is
  refused to all: default deny), decided by `policy.decide` with the request's `tenant` field as the tenant;
- a district department's call under its grant: `policy.check_department_grant` (the HTTP hook's own
  check, door "grpc"), then `Access.admit` just before the answer, exactly as the HTTP views do; the
  services are called as the department's principal narrowed to the tenant and carrying the grant;
- every department call, allowed or refused, is in the audit log (gateway/department.py);
- the transport (gateway/frontdoor_tls.py): mutual TLS, each department system presenting a client certificate
  that the client CA signed and that the clients table maps to its department; the token must be that
  department's (else PERMISSION_DENIED `certificate_mismatch`, audited); a certificate not in the table is
  UNAUTHENTICATED `certificate_unknown`. Plaintext only on a loopback host (development); on any other host
  without TLS the door refuses to start. Under mutual TLS the health service alone is also served in plaintext
  on HONGLING_FRONTDOOR_HEALTH_PORT, for probes that hold no client certificate.

Refusals are status codes with the message and trailing metadata `x-hongling-error-reason` and
`x-hongling-error-field` as the services send them (services/common/grpc_server.py): 400
INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED (outside a grant: reason `outside_grant`,
field = what is missing), 404 NOT_FOUND, 429 RESOURCE_EXHAUSTED (the gateway's per-address and
per-caller rate limits), 503 UNAVAILABLE. Every answer carries `x-request-id` in its trailing metadata.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.struct_pb2 import Struct
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from hongling.common.v1 import location_pb2
from hongling.frontdoor.v1 import frontdoor_pb2 as pb
from hongling.frontdoor.v1 import frontdoor_pb2_grpc as pb_grpc
from hongling.intake.v1 import intake_pb2
from hongling.org.v1 import org_pb2

from gateway import department
from gateway.app import REQUEST_ID_RE
from gateway.calls import admit
from gateway.clients import Clients
from gateway.errors import GRPC_TO_HTTP, ApiError, storage_unavailable
from gateway.frontdoor_tls import CertIdentity, ClientTable, Transport, TransportError, describe_certificate, plan
from gateway.governance import shapes
from gateway.governance.store import GovernanceStore, open_store
from gateway.identity import Identity, identify
from gateway.policy import DEPARTMENTS, FRONTDOOR, POLICY, Rule, check_department_grant, decide
from gateway.protojson import to_json
from gateway.ratelimit import RateLimits, bucket_key
from gateway.routes_issues import hand_over
from gateway.routes_org import Collection, collection_of, community_of, department_records
from gateway.sessions import SessionVerifier
from gateway.tokens import TokenFileError, TokenStore
from gateway.users import AccountStore
from services.common import context, dependencies, metrics
from services.common.audit import AuditLog, open_log
from services.common.errors import Unavailable
from services.common.grpc_server import REQUEST_ID_KEY, error_details, error_trailers, run_until_signalled
from services.common.logs import setup_logging
from services.common.principal import Principal
from services.common.settings import Settings, get_settings
from services.common.tenants import tenant_slugs

log = logging.getLogger("gateway.frontdoor")

SERVICE = pb.DESCRIPTOR.services_by_name["DepartmentGateway"]
SERVICE_NAME: str = SERVICE.full_name  # hongling.frontdoor.v1.DepartmentGateway
AUTHORIZATION_KEY = "authorization"
ASSISTANCE_CHANNEL = "department_assistance"
BIND_ATTEMPTS = 10  # one a second
OUTSIDE_GRANT = "outside_grant"  # the reason of a refusal by the grant check (policy.check_department_grant, admit)
CERTIFICATE_UNKNOWN = "certificate_unknown"  # mutual TLS: a client certificate the clients table does not name
CERTIFICATE_MISMATCH = "certificate_mismatch"  # mutual TLS: the token is not the certificate's department's
# An ApiError's HTTP status -> the front door's status code (anything else: INTERNAL).
STATUS: dict[int, grpc.StatusCode] = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
}


@dataclass(frozen=True)
class Refusal:
    """A call's end in an error, as the caller sees it."""

    code: grpc.StatusCode
    message: str
    reason: str
    field: str | None = None


@dataclass(frozen=True)
class Admitted:
    """What the door established for one call before its method runs."""

    method: str  # the full method name, /hongling.frontdoor.v1.DepartmentGateway/<Method>
    principal: Principal  # as the services see it: narrowed to the tenant, with the grant for grant calls
    tenant: str | None
    access: department.Access | None  # a district department's call under its grant
    request_id: str


_CALL: ContextVar[Admitted | None] = ContextVar("frontdoor_call", default=None)


def current_call() -> Admitted:
    """The call the door admitted (the interceptor sets it); a method reached any other way is refused."""
    found = _CALL.get()
    if found is None:
        raise ApiError(403, "forbidden", "this method was reached without the front door's checks (default deny)")
    return found


def peer_address(peer: str) -> str:
    """The client address of a gRPC peer string ("ipv4:1.2.3.4:5", "ipv6:[::1]:5"; others as they are)."""
    kind, _, rest = peer.partition(":")
    if kind in ("ipv4", "ipv6"):
        return rest.rsplit(":", 1)[0].strip("[]")
    return peer


def refusal_of(exc: BaseException, request_id: str) -> Refusal:
    """How an error ends a call: the door's own refusals, a service's status passed on, or INTERNAL."""
    if isinstance(exc, ApiError):
        code = STATUS.get(exc.status, grpc.StatusCode.INTERNAL)
        return Refusal(code, exc.message, exc.code, exc.field)
    if isinstance(exc, grpc.RpcError) and isinstance(exc, grpc.Call):
        code = exc.code()
        if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return Refusal(
                grpc.StatusCode.UNAVAILABLE,
                "a back-end service is not answering right now (服务暂不可用); retry shortly",
                "service_unavailable",
            )
        if code in GRPC_TO_HTTP:  # the service's answer to the caller: passed on as the HTTP door does
            return Refusal(code, exc.details() or code.name, *error_details(exc, code.name.lower()))
        log.error("a back-end service failed: %s %s", code.name, exc.details())
        return Refusal(
            grpc.StatusCode.INTERNAL, f"a back-end service failed (request id {request_id})", "upstream_error"
        )
    if isinstance(exc, Unavailable):  # refused while the door's database is down (dependencies.refuse_if_down)
        return Refusal(grpc.StatusCode.UNAVAILABLE, exc.message, exc.reason)
    down = storage_unavailable(exc)  # the door's own database (audit log, grants, accounts) cannot be reached
    if down is not None:
        log.warning("the database is not answering: %s", exc)
        return Refusal(grpc.StatusCode.UNAVAILABLE, down.message, down.code)
    log.error("unhandled error", exc_info=exc)
    return Refusal(
        grpc.StatusCode.INTERNAL,
        f"internal error (request id {request_id}); the operators have the details",
        "internal",
    )


class Malformed:
    """A request whose bytes are not the method's message (truncated, garbage, a string that is not UTF-8):
    gRPC would end the call as INTERNAL ("Exception deserializing request!"); the door refuses it as
    INVALID_ARGUMENT instead, once the caller is known."""

    def __init__(self, message: str) -> None:
        self.message = message


def lenient(deserialize: Callable[[bytes], Any] | None, message: str) -> Callable[[bytes], Any]:
    """The method's request deserializer, answering a Malformed for bytes it cannot parse."""

    def parse(data: bytes) -> Any:
        try:
            return deserialize(data) if deserialize is not None else data
        except Exception:  # DecodeError, or a UTF-8 error in a string field: the caller's bytes, not a bug here
            return Malformed(message)

    return parse


def _struct(data: Mapping[str, Any]) -> Struct:
    out = Struct()
    out.update(dict(data))
    return out


def _str_field(request: Message, name: str) -> str | None:
    """A string field of the request, or None when the message has no such field."""
    if not isinstance(request, Message) or name not in request.DESCRIPTOR.fields_by_name:
        return None
    return str(getattr(request, name))


class Door:
    """The front door's checks, shared by every method: identity, rate limits, policy, grant, audit."""

    def __init__(
        self,
        settings: Settings,
        *,
        tokens: TokenStore,
        sessions: SessionVerifier | None,
        clients: Clients,
        store: GovernanceStore,
        audit: AuditLog,
        certificates: ClientTable | None = None,
    ) -> None:
        self.settings = settings
        self.tokens = tokens
        self.sessions = sessions
        self.clients = clients
        self.store = store
        self.audit = audit
        # Under mutual TLS (set by FrontDoorServer from its transport): client certificate -> department.
        self.certificates = certificates
        self.limits = RateLimits(settings)

    @classmethod
    def open(cls, settings: Settings) -> Door:
        """The door of this deployment, built as the HTTP gateway builds its own (gateway/app.py create_app,
        gateway/routes_auth.py init_app). Raises TokenFileError if the API token file cannot be read."""
        tokens = TokenStore(settings.api_tokens_file)
        tokens.load()
        sessions = SessionVerifier(
            settings.session_secret, AccountStore(settings.mongo_uri).get, accepted=settings.session_secrets()[1:]
        )
        return cls(
            settings,
            tokens=tokens,
            sessions=sessions,
            clients=Clients.connect(settings),
            store=open_store(settings),
            audit=open_log(settings),
        )

    def identify(
        self, peer: str, md: Mapping[str, str], auth_context: Mapping[str, Sequence[bytes]] | None = None
    ) -> tuple[Identity, CertIdentity | None]:
        """Who calls: the token's identity and, under mutual TLS, the department its client certificate stands
        for (the per-address rate limit first, so refused credentials count too); ApiError 401/429/503."""
        self.limits.ip.check(bucket_key(peer_address(peer)))
        cert = None
        if self.certificates is not None:
            cert = self.certificates.identify(auth_context or {})
            if cert is None:
                raise ApiError(
                    401,
                    CERTIFICATE_UNKNOWN,
                    f"this client certificate ({describe_certificate(auth_context or {})}) is signed by the client CA "
                    "but is not registered for any department: ask the operators to add it to the front door's "
                    "client table (HONGLING_FRONTDOOR_CLIENTS_FILE; 客户端证书未登记)",
                )
        return identify(md.get(AUTHORIZATION_KEY), self.tokens, self.sessions), cert

    def check_certificate(
        self, cert: CertIdentity, identity: Identity, method: str, tenant: str | None, request_id: str
    ) -> None:
        """Under mutual TLS the token must be the department's that the client certificate names: a call without
        a token is UNAUTHENTICATED, a token of anyone else PERMISSION_DENIED (audited, whoever the token is)."""
        p = identity.principal
        if identity.anonymous:
            raise ApiError(
                401,
                "unauthenticated",
                f"this client certificate is department {cert.department!r}'s: send its API token too, "
                "authorization: Bearer <token> (需要部门令牌)",
                field=AUTHORIZATION_KEY,
            )
        if p.role in DEPARTMENTS and p.sub == cert.department:
            return
        self._audit_plain(
            p,
            "refused",
            method,
            tenant,
            request_id,
            {"reason": CERTIFICATE_MISMATCH, "certificate_department": cert.department, "certificate": cert.matched},
        )
        raise ApiError(
            403,
            CERTIFICATE_MISMATCH,
            f"the client certificate ({cert.matched}) is department {cert.department!r}'s, but the token is "
            f"{p.sub!r}'s (role {p.role}): call with the token of the department the certificate names, or with "
            "the certificate issued to the token's department (证书与令牌不属于同一部门)",
            field=AUTHORIZATION_KEY,
        )

    def admit_call(self, identity: Identity, method: str, request: Message, request_id: str) -> Admitted:
        """Whether POLICY lets the caller call this method on this tenant and, for a district department on a
        grant method, whether the grant it names covers the call. Raises ApiError; every refusal of a
        district department (and its allowed calls outside a grant) goes to the audit log."""
        p = identity.principal
        department_identity = p.role == "district_department"
        name = method.rsplit("/", 1)[-1]
        key = f"{FRONTDOOR}{name}"
        rule = POLICY.get(key)
        tenant = _str_field(request, "tenant") if rule is not None and rule.tenant_scoped else None
        try:
            if not identity.anonymous:
                self.limits.principal.check(p.sub)
            if rule is not None and rule.tenant_scoped and not tenant and rule.admits(p.role):
                raise ApiError(
                    400,
                    "invalid_argument",
                    "tenant is required: a tenant slug such as shanggao (需要指明街道/镇)",
                    field="tenant",
                )
            principal, refusal = decide(rule, key, identity, tenant, local=False)
            if refusal is not None:
                raise refusal
        except ApiError as err:
            if department_identity:
                self._audit_plain(p, "refused", method, tenant, request_id, {"reason": err.code})
            raise
        assert principal is not None and rule is not None
        access = None
        if department_identity and rule.grant:
            assert tenant is not None  # grant rules are tenant-scoped
            access = self._check_grant(rule, p, method, tenant, request, request_id)
            principal = Principal(sub=p.sub, role=p.role, tenants=(tenant,), grant_id=access.grant.id)
        elif department_identity:
            self._audit_plain(p, "allowed", method, tenant, request_id, {})
        return Admitted(method, principal, tenant, access, request_id)

    def _check_grant(
        self, rule: Rule, p: Principal, method: str, tenant: str, request: Message, request_id: str
    ) -> department.Access:
        params: dict[str, str] = {}
        collection = _str_field(request, "collection")
        if collection is not None:
            params["collection"] = collection
        item_id = _str_field(request, "id")
        if item_id:
            params["item_id"] = item_id
        filters: Mapping[str, str] = getattr(request, "filter", None) or {}
        return check_department_grant(
            rule,
            p,
            tenant,
            params,
            door="grpc",
            method=method,
            grant_id=_str_field(request, "grant_id") or "",
            community_id=filters.get("community_id", ""),
            fields=department.parse_fields(",".join(getattr(request, "fields", ()))),
            filters=tuple(sorted(k for k in filters if k not in department.NON_FILTER_ARGS)),
            title=_str_field(request, "title"),
            request_id=request_id,
            store=self.store,
            audit=self.audit,
        )

    def _audit_plain(
        self, p: Principal, outcome: str, method: str, tenant: str | None, request_id: str, detail: dict[str, str]
    ) -> None:
        department.audit_plain_call(
            p,
            outcome=outcome,
            door="grpc",
            method=method,
            tenant=tenant if tenant in tenant_slugs() else "",
            request_id=request_id,
            detail=detail,
            audit=self.audit,
        )


class FrontDoorInterceptor(grpc.ServerInterceptor):
    """Runs the door's checks before every DepartmentGateway method (health and reflection are open),
    completes or records a department's call after it, and maps every error to its status code."""

    def __init__(self, door: Door) -> None:
        self.door = door

    def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], grpc.RpcMethodHandler | None],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = continuation(handler_call_details)
        method = handler_call_details.method
        if handler is None or not method.startswith(f"/{SERVICE_NAME}/"):
            return handler  # the open probe services (health, reflection); unknown methods: UNIMPLEMENTED
        if handler.unary_unary is None:  # every DepartmentGateway method is unary; anything else is refused
            return None
        inner = handler.unary_unary

        def wrapped(request: Message, ctx: grpc.ServicerContext) -> Any:
            return self._call(method, inner, request, ctx)

        request_name = method.rsplit("/", 1)[-1] + "Request"
        return grpc.unary_unary_rpc_method_handler(
            wrapped,
            request_deserializer=lenient(handler.request_deserializer, request_name),
            response_serializer=handler.response_serializer,
        )

    def _call(self, method: str, inner: Callable[..., Any], request: Message, ctx: grpc.ServicerContext) -> Any:
        pairs = [(k, v) for k, v in ctx.invocation_metadata() if isinstance(v, str)]
        md = dict(pairs)
        incoming = md.get(REQUEST_ID_KEY, "")
        request_id = incoming if REQUEST_ID_RE.match(incoming) else context.new_request_id()
        started = time.perf_counter()
        code = grpc.StatusCode.OK
        admitted: Admitted | None = None
        who = "-"
        tenant = _str_field(request, "tenant")
        with context.bound(
            request_id=request_id, trace="frontdoor", tenant=tenant if tenant in tenant_slugs() else None
        ):
            try:
                dependencies.refuse_if_down()  # the door's database is down: UNAVAILABLE now, not after 30 s
                if sum(1 for k, _v in pairs if k == AUTHORIZATION_KEY) > 1:
                    raise ApiError(
                        401,
                        "unauthenticated",
                        "send one authorization: Bearer <token>, not several (只能提供一个令牌)",
                        field=AUTHORIZATION_KEY,
                    )
                identity, cert = self.door.identify(ctx.peer(), md, ctx.auth_context())
                who = f"{identity.principal.sub}, {identity.principal.role}"
                if cert is not None:
                    who += f", certificate of {cert.department}"
                    self.door.check_certificate(
                        cert, identity, method, tenant if tenant in tenant_slugs() else None, request_id
                    )
                if isinstance(request, Malformed):
                    raise ApiError(
                        400,
                        "invalid_argument",
                        f"the request is not a valid {request.message} message: truncated or malformed bytes, or "
                        "a string that is not UTF-8 (请求消息格式错误)",
                    )
                admitted = self.door.admit_call(identity, method, request, request_id)
                token = _CALL.set(admitted)
                try:
                    with context.bound(tenant=admitted.tenant, principal=admitted.principal):
                        response = inner(request, ctx)
                finally:
                    _CALL.reset(token)
                access = admitted.access
                if access is not None and not access.admitted:
                    # A method that answered a department without admitting the call (a bug): answer nothing.
                    log.error("%s answered a department call it did not admit: refused", method)
                    raise ApiError(403, "not_admitted", "this call was not admitted under its grant (default deny)")
                ctx.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
                return response
            except Exception as exc:  # every error ends the call with its status code
                refusal = refusal_of(exc, request_id)
                code = refusal.code
                access = admitted.access if admitted is not None else None
                if access is not None and not access.admitted and refusal.reason != OUTSIDE_GRANT:
                    # Passed its grant check, then failed (no such record, a service refused): recorded as
                    # refused with the error. A refusal by the grant itself (Access.admit) is recorded already.
                    access.record_failure(code.name, refusal.reason)
                ctx.set_trailing_metadata(
                    ((REQUEST_ID_KEY, request_id), *error_trailers(refusal.reason, refusal.field))
                )
                if code in (grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED):
                    log.warning("refused %s (%s): %s", method, who, refusal.message)
                ctx.abort(code, refusal.message)
            finally:
                log.info("%s -> %s in %.1f ms (%s)", method, code.name, (time.perf_counter() - started) * 1000, who)


class DepartmentGateway(pb_grpc.DepartmentGatewayServicer):
    """The methods: each runs after the door admitted the call (current_call()), as the HTTP views do."""

    def __init__(self, door: Door) -> None:
        self.door = door

    @staticmethod
    def _access() -> department.Access:
        access = current_call().access
        if access is None:  # the policy admits only departments under a grant here
            raise ApiError(403, "forbidden", "only a district department under a grant may call this method")
        return access

    def _rpc(self, c: Collection, verb: str) -> Callable[..., Any]:
        method: Callable[..., Any] = getattr(self.door.clients.org, c.method(verb))
        return method

    def ListOrgRecords(self, request: pb.ListOrgRecordsRequest, context: grpc.ServicerContext) -> Any:
        """As gateway/routes_org.py _department_list: the grant's community only, only the granted fields."""
        access = self._access()
        c = collection_of(request.collection)
        records, token = department_records(
            c, access, self.door.clients.org, dict(request.filter), request.page_size, request.page_token
        )
        return pb.ListOrgRecordsResponse(records=[_struct(r) for r in records], next_page_token=token)

    def GetOrgRecord(self, request: pb.GetOrgRecordRequest, context: grpc.ServicerContext) -> Any:
        """As gateway/routes_org.py get_item: fetched, then admitted once its community is known."""
        access = self._access()
        c = collection_of(request.collection)
        if not request.id:
            raise ApiError(400, "invalid_argument", "id is required: the record's id (需要记录编号)", field="id")
        found = self._rpc(c, "Get")(org_pb2.GetRequest(id=request.id))
        admit(access, target=f"{c.slug}/{request.id}", community_id=community_of(c, found))
        return pb.OrgRecord(record=_struct(department.project(to_json(found), access.fields)))

    def HandOverTask(self, request: pb.HandOverTaskRequest, context: grpc.ServicerContext) -> Any:
        """As gateway/routes_issues.py hand_over_task: counted, then taken in by intake tagged with the grant."""
        access = self._access()
        grant_id = access.grant.id
        location = location_pb2.Location()
        location.CopyFrom(request.location)
        req = intake_pb2.CreateIssueRequest(
            title=request.title,
            description=request.description,
            channel=ASSISTANCE_CHANNEL,
            category=request.category,
            location=location,
            grant_id=grant_id,
        )
        issue = hand_over(
            access, req, self.door.clients, key=request.idempotency_key, audit=self.door.audit, store=self.door.store
        )
        return pb.HandOverTaskResponse(
            issue_id=issue.id,
            status=issue.status,
            grant_id=grant_id,
            grant_use=access.use,
            grant_quota=access.grant.quota,
        )

    def GetGrant(self, request: pb.GetGrantRequest, context: grpc.ServicerContext) -> Any:
        """As GET /api/v1/grants/{id} without the trail; a department sees its own grants only."""
        principal = current_call().principal
        doc = self.door.store.grant(request.grant_id.strip())
        if doc is None or not shapes.may_see_grant(principal, doc):
            raise ApiError(
                404, "not_found", f"no grant {request.grant_id!r} that you may see (未找到该授权)", field="grant_id"
            )
        return pb.Grant(grant=_struct(shapes.grant_json(doc, now=datetime.now(UTC))))


class FrontDoorServer:
    """The front door's gRPC server: DepartmentGateway behind the door's interceptor, health, reflection."""

    def __init__(self, door: Door, *, port: int | None = None, transport: Transport | None = None) -> None:
        """Listens as `transport` says (default: as the settings say, gateway/frontdoor_tls.plan: TransportError
        on a non-loopback host without TLS)."""
        settings = door.settings
        self.door = door
        self.transport = plan(settings) if transport is None else transport
        door.certificates = self.transport.clients
        self.server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=settings.grpc_workers, thread_name_prefix="frontdoor-rpc"),
            interceptors=[FrontDoorInterceptor(door)],
            options=[("grpc.so_reuseport", 0)],
        )
        pb_grpc.add_DepartmentGatewayServicer_to_server(DepartmentGateway(door), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME],
            self.server,
        )
        wanted = settings.frontdoor_port if port is None else port
        assert wanted is not None
        self.port = self._bind(self.server, f"{settings.host}:{wanted}", self.transport.credentials)
        # Under mutual TLS: the health service alone, in plaintext, for probes without a client certificate.
        self.health_server: grpc.Server | None = None
        self.health_port: int | None = None
        if self.transport.mtls:
            self.health_server = grpc.server(
                futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="frontdoor-health"),
                options=[("grpc.so_reuseport", 0)],
            )
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)
            assert settings.frontdoor_health_port is not None
            health_port = settings.frontdoor_health_port if port is None else 0
            self.health_port = self._bind(self.health_server, f"{settings.host}:{health_port}", None)
        # Health is NOT_SERVING while the door's own database (audit log, grants, accounts) is down.
        self._stop = threading.Event()
        own = [dependencies.mongo_check(door.audit.entries.database.client)] if isinstance(door.audit, AuditLog) else []
        self.dependencies = dependencies.DependencyMonitor(own, self._set_serving)

    @staticmethod
    def _bind(
        server: grpc.Server,
        address: str,
        credentials: grpc.ServerCredentials | None,
        attempts: int = BIND_ATTEMPTS,
    ) -> int:
        """Listen on the address (TLS with credentials, else plaintext). A port in use may be another program's
        (stop), or a passing outgoing connection's source port (the ports lie in the kernel's ephemeral range):
        tried again for a while."""
        for attempt in range(1, attempts + 1):
            try:
                if credentials is not None:
                    bound = server.add_secure_port(address, credentials)
                else:
                    bound = server.add_insecure_port(address)
            except RuntimeError:  # grpcio >= 1.60 raises where older versions returned 0
                bound = 0
            if bound:
                return bound
            if attempt < attempts:
                log.warning("cannot listen on %s yet (port in use?); trying again", address)
                time.sleep(1.0)
        raise SystemExit(
            f"frontdoor: cannot listen on {address} (port in use?); "
            "change HONGLING_FRONTDOOR_PORT (HONGLING_FRONTDOOR_HEALTH_PORT under TLS) or HONGLING_PORT_BASE"
        )

    def start(self) -> None:
        self.server.start()
        if self.health_server is not None:
            self.health_server.start()
        self.dependencies.start(self._stop)  # SERVING, or NOT_SERVING while the database is down
        host = self.door.settings.host
        if self.transport.mtls:
            log.info(
                "front door serving gRPC with mutual TLS on %s:%d (health in plaintext on %s:%s)",
                host,
                self.port,
                host,
                self.health_port,
            )
        else:
            log.info("front door serving gRPC in plaintext on %s:%d (loopback only)", host, self.port)

    def _set_serving(self, ok: bool) -> None:
        if self._stop.is_set():
            return
        status = health_pb2.HealthCheckResponse.SERVING if ok else health_pb2.HealthCheckResponse.NOT_SERVING
        for name in (SERVICE_NAME, ""):
            self.health.set(name, status)

    def stop(self, grace: float = 5.0) -> None:
        log.info("front door shutting down")
        self._stop.set()
        self.health.enter_graceful_shutdown()
        if self.health_server is not None:
            self.health_server.stop(grace)
        self.server.stop(grace).wait()
        self.door.clients.close()
        log.info("front door stopped")

    def serve_forever(self) -> None:
        """Start, then block until SIGTERM/SIGINT, then shut down gracefully (calls in flight finish)."""
        run_until_signalled(self.start, self.stop)


def main() -> None:
    settings = get_settings()
    setup_logging("frontdoor", settings.log_level)
    try:
        transport = plan(settings)  # before anything connects: a bad transport is named at once
    except TransportError as exc:
        print(f"frontdoor: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        door = Door.open(settings)
    except TokenFileError as exc:
        print(f"frontdoor: cannot read HONGLING_API_TOKENS_FILE: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    # the door's own /metrics (audit refusals, rate limits, auth outcomes of this process) on
    # HONGLING_GATEWAY_METRICS_PORT (base + 160), beside the HTTP gateway's /metrics on its own port.
    assert settings.gateway_metrics_port is not None
    metrics.serve_metrics(settings.gateway_metrics_port, settings.host)
    FrontDoorServer(door, transport=transport).serve_forever()


if __name__ == "__main__":
    main()
