"""Co-building activities (参与共建) for the portals: /api/v1/tenants/<tenant>/alliance/activities...
-> hongling.alliance.v1.ActivityService.

    GET    alliance/activities?community_id=&when=upcoming|past   a community's activities, paged
    POST   alliance/activities                           publish (title, kind, place, times, capacity, deadline) -> 201
    GET    alliance/activities/{id}                      places taken, waiting, attended; the roster (staff)
    POST   alliance/activities/{id}/signups              报名: a place, or the waiting list -> 201
    POST   alliance/activities/{id}/withdrawals          退出: the first waiting is promoted
    POST   alliance/activities/{id}/attendance           参加: staff record (hours ≤ its length), a member checks in
    GET    alliance/activity-signups?person_id=&unit_id=&community_id=   a person's or unit's activities

Members act as the helper their credential is bound to; staff name the `participant` {kind, id} (and
`person_id` for a unit). A community worker handles its own community's activities only.
"""

from __future__ import annotations

from flask import Blueprint, Response
from hongling.alliance.v1 import activities_pb2 as pb
from hongling.alliance.v1 import activities_pb2_grpc as pb_grpc

from gateway.calls import clients, tenant_call
from gateway.community import list_filter
from gateway.query import PAGE_TOKEN, args, page_size, query, text
from gateway.routes_alliance_posts import BASE, COMMUNITY, PAGE_DEFAULT, PAGE_MAX, answer, body_of, page
from gateway.routes_dispatch import DOCS, Doc

bp = Blueprint("alliance_activities", __name__)
ACTIVITIES = f"{BASE}/activities"


def activities() -> pb_grpc.ActivityServiceStub:
    return pb_grpc.ActivityServiceStub(clients().channels["alliance"])


@bp.get(ACTIVITIES)
@query(
    COMMUNITY,
    text("when", "时间 upcoming (not over, soonest first) or past (latest first)", enum=("upcoming", "past")),
    page_size(PAGE_MAX, PAGE_DEFAULT),
    PAGE_TOKEN,
)
def list_activities(tenant: str) -> Response:
    """共建活动 A community's activities: upcoming soonest first, or past latest first, with places taken"""
    q = args()
    req = pb.ListActivitiesRequest(**{**q, "community_id": list_filter(q["community_id"])})
    with tenant_call(tenant):
        resp = activities().ListActivities(req)
    return page("activities", list(resp.activities), resp.next_page_token)


@bp.post(ACTIVITIES)
def publish_activity(tenant: str) -> Response:
    """发布活动 Publish an activity: title, kind (cleanup | health_fair | festival | safety_drill | other), place,
    starts_at, ends_at, capacity, signup_deadline (absent: the start)"""
    req = body_of(pb.PublishActivityRequest)
    with tenant_call(tenant):
        act = activities().PublishActivity(req)
    return answer(act, 201, f"/api/v1/tenants/{tenant}/alliance/activities/{act.id}")


@bp.get(f"{ACTIVITIES}/<activity_id>")
def get_activity(tenant: str, activity_id: str) -> Response:
    """查看活动 One activity: places taken, waiting, attended; staff see the roster, a member its own entry"""
    with tenant_call(tenant):
        return answer(activities().GetActivity(pb.GetActivityRequest(id=activity_id)))


@bp.post(f"{ACTIVITIES}/<activity_id>/signups")
def sign_up(tenant: str, activity_id: str) -> Response:
    """活动报名 Sign up: a place while places are left, else the waiting list in arrival order

    A second sign-up of the same participant is 409; after the sign-up deadline 409."""
    req = body_of(pb.SignUpRequest, activity_id=activity_id)
    with tenant_call(tenant):
        return answer(activities().SignUp(req), 201)


@bp.post(f"{ACTIVITIES}/<activity_id>/withdrawals")
def withdraw(tenant: str, activity_id: str) -> Response:
    """退出活动 Withdraw before the start: a freed place goes to the first waiting, once"""
    req = body_of(pb.WithdrawRequest, activity_id=activity_id)
    with tenant_call(tenant):
        return answer(activities().Withdraw(req))


@bp.post(f"{ACTIVITIES}/<activity_id>/attendance")
def record_attendance(tenant: str, activity_id: str) -> Response:
    """活动签到 Attendance: staff record it (hours ≤ the activity's length; 0: its length), a member checks in
    during the activity (from 30 minutes before its start)"""
    req = body_of(pb.RecordAttendanceRequest, activity_id=activity_id)
    with tenant_call(tenant):
        return answer(activities().RecordAttendance(req))


@bp.get(f"{BASE}/activity-signups")
@query(
    text("person_id", "人员 A person's activities"),
    text("unit_id", "成员单位 A unit's activities"),
    COMMUNITY,
    page_size(PAGE_MAX, PAGE_DEFAULT),
    PAGE_TOKEN,
)
def list_signups(tenant: str) -> Response:
    """参与记录 A person's or unit's activities, latest first (a member: its own)"""
    q = args()
    req = pb.ListSignupsRequest(**{**q, "community_id": list_filter(q["community_id"])})
    with tenant_call(tenant):
        resp = activities().ListSignups(req)
    return page("signups", list(resp.signups), resp.next_page_token)


DOCS.update(
    {
        "alliance_activities.list_activities": Doc(pb.Activity, list_key="activities", errors=(400,)),
        "alliance_activities.publish_activity": Doc(
            pb.Activity, 201, pb.PublishActivityRequest, errors=(400,), headers=("Location",)
        ),
        "alliance_activities.get_activity": Doc(pb.Activity, errors=(404,)),
        "alliance_activities.sign_up": Doc(pb.Activity, 201, pb.SignUpRequest, errors=(400, 404, 409)),
        "alliance_activities.withdraw": Doc(pb.Activity, body=pb.WithdrawRequest, errors=(400, 404, 409)),
        "alliance_activities.record_attendance": Doc(
            pb.Activity, body=pb.RecordAttendanceRequest, errors=(400, 404, 409)
        ),
        "alliance_activities.list_signups": Doc(pb.Signup, list_key="signups", errors=(400,)),
    }
)
