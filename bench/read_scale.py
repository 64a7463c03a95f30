"""The SQL read models at scale (issue 15): lists, search, the overdue queue and counts over 100,000 issues.

Runs against a running stack (deploy/local/test.sh bench starts a private one, the projector included).

1. Load: issues with their tasks are written straight into one tenant's read-model schema (TENANT), each
   row made by the projector's own code (intake's `row_of`, dispatch's `task_row`) from a realistic raw
   document: an IssueDoc / TaskDoc built with mongoengine (not saved) with Chinese titles and descriptions
   from a varied vocabulary, statuses over the real lifecycle, categories from the default catalogue,
   created over three years, about 5% of the tasks unfinished past their completion deadline. The counts
   (intake_issue_counts, per community and "*") move with the rows, as the projection moves them. Then
   VACUUM ANALYZE (the state autovacuum leaves a table in). Rows of an earlier run (ids "rs…") go first.
2. Measure, at SIZES[0] issues and again at SIZES[-1]: each query REPS times with varied parameters,
   timed around the service's gRPC call with a minted principal (what a caller waits for), and around
   the read-model function alone in the tenant's context ("SQL", decoding the rows included):
   an issue list page by status and category, newest first (page 1, and a deep keyset page reached by
   the returned tokens); a Chinese text search (a common two-character word, a rare one); the overdue
   queue (deadline=completion; the tenant's, and one community's); the count of issues by status (the
   tenant's, one community's). Goal: p99 under 50 ms at the large size, at most 2x its p99 at the small.
3. Audit pages: measured in bench/audit_read_scale.py (1,000,000 entries) where that read model exists.
4. Projection lag: LAG_RATE issues/s, paced, through the gateway for LAG_SECONDS, each issue's lag from
   its 201 to its row in intake_issues (one poller thread, every 20 ms); goal p99 under 1 s. Also the
   projector's own hongling_projection_lag_seconds (from a write to its rows committed).

    HONGLING_TEST_PORT_BASE=25000 bash deploy/local/test.sh bench bench/read_scale.py
    HONGLING_BENCH_READ_SIZES=10000,100000 HONGLING_BENCH_READ_REPS=200 HONGLING_BENCH_LAG_SECONDS=30
    HONGLING_BENCH_READ_PHASES=lag (only the lag; or queries)
"""

from __future__ import annotations

import importlib.util
import os
import random
import statistics
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import requests
from benchlib import admin_headers, ensure_grid, percentile, random_point, settle
from hongling.dispatch.v1 import dispatch_pb2 as dpb
from hongling.dispatch.v1 import dispatch_pb2_grpc as dpb_grpc
from hongling.intake.v1 import intake_pb2 as ipb
from hongling.intake.v1 import intake_pb2_grpc as ipb_grpc
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import Text, any_, bindparam, delete, func, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert

from services.common import context, readside
from services.common.grpc_server import TENANT_KEY
from services.common.principal import METADATA_KEY, Principal, mint
from services.common.settings import get_settings
from services.dispatch import domain as ddomain
from services.dispatch import readmodel as dreadmodel
from services.dispatch.documents import AssignmentDoc, CrewDoc, TaskDoc, TaskEventDoc
from services.intake import domain as idomain
from services.intake import readmodel as ireadmodel
from services.intake.classify import default_rules
from services.intake.documents import ContactDoc, HistoryDoc, IssueDoc, LocationDoc, PlaceDoc

TENANT = "daimiao"
SIZES = tuple(int(n) for n in os.environ.get("HONGLING_BENCH_READ_SIZES", "10000,100000").split(","))
REPS = int(os.environ.get("HONGLING_BENCH_READ_REPS", "200"))
LAG_SECONDS = float(os.environ.get("HONGLING_BENCH_LAG_SECONDS", "30"))
LAG_RATE = float(os.environ.get("HONGLING_BENCH_LAG_RATE", "50"))
SEED = int(os.environ.get("HONGLING_BENCH_SEED", "15"))
# Which parts to run: "queries" (load and measure), "lag" (the projection lag at LAG_RATE), or both.
PHASES = set(os.environ.get("HONGLING_BENCH_READ_PHASES", "queries,lag").split(","))
GOAL_P99_MS = 50.0
GOAL_GROWTH = 2.0
GOAL_LAG_P99_S = 1.0
BATCH = 1000
ID_PREFIX = "rs"  # issue ids "rs" + 30 hex digits (32 characters, as intake's uuid hex), so a rerun finds them
NOW = datetime.now(UTC)
SPAN = timedelta(days=3 * 365)
RULES = default_rules()
CATEGORY_CODES = RULES.category_codes()

# ---------------------------------------------------------------- the vocabulary of the loaded issues

# (category, problem, weight): what residents report; a problem's words are what the searches look for.
PROBLEMS: tuple[tuple[str, str, float], ...] = (
    ("property_repair", "楼道灯不亮", 6),
    ("property_repair", "单元门禁损坏", 3),
    ("property_repair", "屋顶漏雨", 2),
    ("property_repair", "电梯经常停运", 3),
    ("property_repair", "楼梯扶手松动", 1),
    ("property_repair", "外墙瓷砖脱落", 1),
    ("sanitation", "垃圾清运不及时", 6),
    ("sanitation", "垃圾桶满溢无人清理", 3),
    ("sanitation", "楼道堆放杂物", 3),
    ("sanitation", "化粪池堵塞污水外溢", 1),
    ("public_safety", "井盖缺失", 1),
    ("public_safety", "路灯杆倾斜", 1),
    ("public_safety", "电动车楼道充电", 3),
    ("neighbour_dispute", "楼上漏水影响楼下", 3),
    ("neighbour_dispute", "邻居占用公共楼道", 2),
    ("neighbour_dispute", "宠物狗夜间吠叫", 2),
    ("elderly_care", "独居老人需要助餐服务", 2),
    ("elderly_care", "老人行动不便需要上门服务", 2),
    ("parking", "违章停车占用消防通道", 5),
    ("parking", "僵尸车长期占用车位", 2),
    ("parking", "非机动车乱停乱放", 3),
    ("greening", "树枝挡住路灯", 3),
    ("greening", "绿化带杂草丛生", 2),
    ("greening", "枯树有倒伏风险", 1),
    ("greening", "树上有马蜂窝", 0.2),
    ("water_supply", "自来水水压低", 2),
    ("water_supply", "水管破裂漏水", 3),
    ("water_supply", "停水没有提前通知", 2),
    ("power_supply", "小区频繁停电", 2),
    ("power_supply", "电表箱门损坏", 1),
    ("gas_safety", "燃气管道有异味", 1),
    ("road_facility", "路面坑洼", 5),
    ("road_facility", "人行道砖松动", 2),
    ("road_facility", "下水道堵塞漏水", 4),
    ("road_facility", "井盖松动有响声", 2),
    ("noise", "噪音扰民", 4),
    ("noise", "夜间施工噪音", 3),
    ("noise", "广场舞音响声音太大", 2),
    ("heating", "暖气不热", 4),
    ("heating", "暖气管道漏水", 2),
    ("illegal_construction", "楼顶违章搭建", 2),
    ("illegal_construction", "占用绿地私搭乱建", 1),
    ("other", "建议增设休息座椅", 1),
    ("other", "咨询老旧小区改造政策", 1),
)
COMMON_WORD = "漏水"  # in five problems (about 14% of the issues)
RARE_WORD = "马蜂"  # in one rare problem (about 0.2%)
ESTATES = ("岱宗", "泰山", "东岳", "迎胜", "虎山", "灵山", "擂鼓石", "望岳", "青年", "财源", "通天", "岱庙")
STREETS = ("岱宗大街", "东岳大街", "迎胜路", "虎山路", "青年路", "通天街", "财源大街", "灵山大街")
SINCE = ("已经三天了", "持续一周了", "反映多次未解决", "今天早上发现", "最近一个月反复出现", "昨晚开始")
IMPACT = (
    "老人晚上上下楼不方便",
    "影响居民正常出行",
    "存在安全隐患",
    "孩子上学路上很危险",
    "影响周边住户休息",
    "居民意见很大",
    "雨天更加严重",
)
ASKS = ("希望尽快处理", "请社区协调物业解决", "请相关部门核实处理", "盼早日修好", "麻烦网格员来看一下")
COMMUNITIES = tuple((f"rs-c{n:02d}", f"{name}社区") for n, name in enumerate(ESTATES, 1))
SURNAMES = "王李张刘陈杨赵黄周吴徐孙马朱胡郭何高林罗"


def _weights() -> tuple[list[tuple[str, str]], list[float]]:
    return [(c, p) for c, p, _ in PROBLEMS], [w for _, _, w in PROBLEMS]


PROBLEM_CHOICES, PROBLEM_WEIGHTS = _weights()


def _text(rng: random.Random) -> tuple[str, str, str]:
    """(category, title, description) of one report, from the vocabulary with places and numbers."""
    category, problem = rng.choices(PROBLEM_CHOICES, PROBLEM_WEIGHTS)[0]
    estate = rng.choice(ESTATES)
    where = rng.choice(
        (
            f"{rng.randint(1, 40)}号楼{rng.randint(1, 6)}单元",
            f"{estate}小区{rng.randint(1, 30)}号楼",
            f"{rng.choice(STREETS)}{rng.randint(1, 300)}号",
            f"{estate}花园南门",
        )
    )
    title = f"{where}{problem}"
    description = (
        f"{where}{problem}，{rng.choice(SINCE)}，{rng.choice(IMPACT)}。"
        f"{rng.choice(ASKS)}。联系人在{rng.randint(1, 30)}层，白天都在家。"
    )
    return category, title, description


# ---------------------------------------------------------------- realistic documents -> rows


# The path an issue takes to each status (history kinds), and its task's status there.
PATH = ("received", "classified", "whistle_blown", "assigned", "in_progress", "done", "verified", "published", "rated")
TASK_STATUS = {
    "whistle_blown": ddomain.OPEN,
    "assigned": ddomain.ASSIGNED,
    "in_progress": ddomain.IN_PROGRESS,
    "done": ddomain.DONE,
    "verified": ddomain.VERIFIED,
    "published": ddomain.VERIFIED,
    "rated": ddomain.VERIFIED,
    "cancelled": ddomain.CANCELLED,
}
COMPLETE_WITHIN = {ddomain.SERVICE: timedelta(days=7), ddomain.TACKLING: timedelta(days=3)}
COMPLETE_WITHIN[ddomain.EMERGENCY] = timedelta(days=1)


def _status(rng: random.Random, created: datetime) -> str:
    """A status for an issue of this age: old ones closed, new ones on their way; ~3.5% stuck unfinished
    (about 5% of the tasks: a duplicate has none)."""
    if rng.random() < 0.035:
        return rng.choice(("whistle_blown", "assigned", "in_progress"))
    if NOW - created < timedelta(days=14):
        return rng.choice(("received", "classified", "whistle_blown", "assigned", "in_progress", "done"))
    r = rng.random()
    if r < 0.08:
        return idomain.STATUS_DUPLICATE
    if r < 0.12:
        return idomain.STATUS_CANCELLED
    return rng.choice(("done", "verified", "verified", "published", "rated", "rated"))


# A raw document is what mongoengine stores for the document (to_mongo): made here as a dict from the
# class's own defaults (an empty document's to_mongo) and the given fields, by their database names, which
# is some 20 times faster than building the mongoengine objects (100,000 issues with their histories and
# tasks in seconds rather than minutes). `check_raw` proves it on a sample: mongoengine reads each one back
# (_from_son), validates it and writes the very same raw document (to_mongo).
_SKELETONS: dict[type[Any], dict[str, Any]] = {}


def _doc(cls: type[Any], **values: Any) -> dict[str, Any]:
    skeleton = _SKELETONS.get(cls)
    if skeleton is None:
        skeleton = _SKELETONS[cls] = cls().to_mongo().to_dict()
    out = dict(skeleton)
    for name, value in values.items():
        key = cls._fields[name].db_field
        if value is None:
            out.pop(key, None)
        else:
            out[key] = value
    return out


def check_raw(cls: type[Any], raw: dict[str, Any]) -> None:
    doc = cls._from_son(raw)
    doc.validate()
    again = doc.to_mongo().to_dict()
    if again != raw:
        diff = sorted(k for k in {*again, *raw} if again.get(k) != raw.get(k))
        raise SystemExit(f"a loaded {cls.__name__} is not what mongoengine stores: fields {diff} differ")


def make(rng: random.Random) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """One issue's raw document and its task's (None: a duplicate, which follows its original's task)."""
    issue_id = ID_PREFIX + f"{rng.getrandbits(120):030x}"
    created = NOW - SPAN * rng.random() ** 1.3  # more recent issues than old ones
    category, title, description = _text(rng)
    cat = RULES.category(category)
    urgency = cat.default_urgency if cat is not None else "routine"
    if rng.random() < 0.03:
        urgency = "urgent"
    status = _status(rng, created)
    channel = rng.choice(("resident_report", "online", "grid_patrol", "hotline_12345", "household_visit"))
    community_id, community_name = rng.choice(COMMUNITIES)
    grid = rng.randint(1, 6)
    by = f"resident:{rng.getrandbits(40):010x}" if channel == "online" else f"worker:{rng.getrandbits(32):08x}"
    steps = ["received", status] if status in (idomain.STATUS_DUPLICATE, "cancelled") else []
    if not steps:
        steps = list(PATH[: PATH.index(status) + 1])
    at = created
    history: list[dict[str, Any]] = []
    for kind in steps:
        zh, en = (
            idomain.history_note(kind, channel=channel, urgency=urgency)
            if kind in ("received", "classified")
            else (idomain.STATUS_ZH.get(kind, kind), kind)
        )
        history.append(_doc(HistoryDoc, at=at, kind=kind, status=kind, note_zh=zh, note_en=en, by=by))
        at += timedelta(minutes=rng.randint(1, 600))
    surname = rng.choice(SURNAMES)
    issue = _doc(
        IssueDoc,
        id=issue_id,
        title=title,
        description=description,
        channel=channel,
        category=category,
        location=_doc(LocationDoc, lat=36.19 + rng.uniform(-0.02, 0.02), lon=117.12 + rng.uniform(-0.02, 0.02)),
        status=status,
        created_by=by,
        created_at=created,
        urgency=urgency,
        urgency_reasons=[f"类别「{cat.name_zh if cat else category}」默认 (category {category} default: {urgency})"],
        affected_households=rng.choice((0, 0, 0, 1, 2, 6, 20)),
        contact=_doc(
            ContactDoc,
            name_enc=uuid.UUID(int=rng.getrandbits(128)).hex * 3,
            phone_enc=uuid.UUID(int=rng.getrandbits(128)).hex * 3,
            name_masked=f"{surname}*",
            phone_masked=f"1{rng.randint(30, 99)}****{rng.randint(1000, 9999)}",
        ),
        place=_doc(
            PlaceDoc,
            community_id=community_id,
            grid_id=f"{community_id}-g{grid}",
            community_name_zh=community_name,
            grid_name_zh=f"{community_name}第{grid}网格",
        ),
        duplicate_of=(ID_PREFIX + f"{rng.getrandbits(120):030x}") if status == idomain.STATUS_DUPLICATE else "",
        history=history,
        version=len(history),
        updated_at=history[-1]["at"],
        status_changed_at=history[-1]["at"],
        status_kind=steps[-1],
    )
    raw_issue = issue
    task_status = TASK_STATUS.get(status)
    if status == idomain.STATUS_DUPLICATE:
        return raw_issue, None
    if task_status is None:  # received / classified: the task is there, nobody on it yet
        task_status = ddomain.OPEN
    call_type = ddomain.URGENCY_CALL.get(urgency, ddomain.SERVICE)
    task_at = created + timedelta(minutes=rng.randint(1, 5))
    complete_by = task_at + COMPLETE_WITHIN[call_type]
    crew: list[dict[str, Any]] = []
    assignment = None
    if task_status not in (ddomain.OPEN, ddomain.CANCELLED):
        helper = f"unit-{rng.randint(1, 300):03d}"
        crew.append(_doc(CrewDoc, kind="member_unit", id=helper, role="lead", via="assignment", joined_at=task_at))
        assignment = _doc(AssignmentDoc, kind="member_unit", id=helper, assigned_at=task_at, response="accepted")
    finished = task_status in ddomain.FINISHED
    task = _doc(
        TaskDoc,
        id=ddomain.task_id_for_issue(issue_id),
        issue_id=issue_id,
        status=task_status,
        created_at=task_at,
        source_event_id=uuid.UUID(int=rng.getrandbits(128)).hex,
        title=title,
        category=category,
        urgency=urgency,
        call_type=call_type,
        community_id=community_id,
        grid_id=f"{community_id}-g{grid}",
        whistle_id=ddomain.whistle_id_for_issue(issue_id),
        whistle_ids=[ddomain.whistle_id_for_issue(issue_id)],
        crew=crew,
        crew_ids=[c["id"] for c in crew],
        assignment=assignment,
        report_in_by=task_at + timedelta(hours=2),
        complete_by=complete_by,
        history=[_doc(TaskEventDoc, at=task_at, action="create", to_status=ddomain.OPEN, by="dispatch")],
        finished_at=history[-1]["at"] if finished else None,
        version=len(history),
        updated_at=history[-1]["at"],
    )
    return raw_issue, task


# ---------------------------------------------------------------- loading


def _count_changes(deltas: Counter[tuple[str, str]]) -> None:
    changes = [{"community_id": c, "status": s, "n": n} for (c, s), n in sorted(deltas.items()) if n]
    if not changes:
        return
    counts = ireadmodel.COUNTS
    with readside.begin(TENANT) as conn:
        up = insert(counts).values(changes)
        conn.execute(
            up.on_conflict_do_update(
                index_elements=[counts.c.community_id, counts.c.status], set_={"n": counts.c.n + up.excluded.n}
            )
        )


def remove_earlier() -> None:
    """Rows of an earlier run of this benchmark (ids "rs…"), and their counts."""
    issues, tasks = ireadmodel.ISSUES, dreadmodel.TASKS
    with readside.begin(TENANT) as conn:
        old = conn.execute(
            select(issues.c.id, issues.c.status, issues.c.community_id).where(issues.c.id.like(f"{ID_PREFIX}%"))
        ).all()
        if not old:
            return
        ids = [r.id for r in old]
        conn.execute(delete(issues).where(issues.c.id.in_(bindparam("ids", expanding=True))), {"ids": ids})
        task_ids = [ddomain.task_id_for_issue(i) for i in ids]
        conn.execute(delete(tasks).where(tasks.c.id.in_(bindparam("ids", expanding=True))), {"ids": task_ids})
    deltas: Counter[tuple[str, str]] = Counter()
    for r in old:
        deltas[(r.community_id, r.status)] -= 1
        deltas[(ireadmodel.ALL_COMMUNITIES, r.status)] -= 1
    _count_changes(deltas)
    print(f"[bench] removed {len(old)} issues (and their tasks) of an earlier run", flush=True)


def vacuum_analyze() -> float:
    started = time.perf_counter()
    schema = readside.schema_for(TENANT)
    with readside.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        for table in ("intake_issues", "intake_issue_counts", "dispatch_tasks"):
            conn.execute(text(f'VACUUM (ANALYZE) "{schema}".{table}'))
    return time.perf_counter() - started


def load(rng: random.Random, start: int, stop: int, stats: dict[str, Any]) -> None:
    """Issues number start..stop-1 with their tasks, in batches of BATCH (one transaction each)."""
    issues, tasks = ireadmodel.ISSUES, dreadmodel.TASKS
    made = wrote = 0.0
    started = time.perf_counter()
    deltas: Counter[tuple[str, str]] = Counter()
    for n in range(start, stop, BATCH):
        t0 = time.perf_counter()
        issue_rows, task_rows = [], []
        for _ in range(min(BATCH, stop - n)):
            raw_issue, raw_task = make(rng)
            if len(issue_rows) == 0:  # one in BATCH: what mongoengine reads, validates and writes back
                check_raw(IssueDoc, raw_issue)
                if raw_task is not None:
                    check_raw(TaskDoc, raw_task)
            row = ireadmodel.row_of(raw_issue)
            issue_rows.append(row)
            deltas[(row["community_id"], row["status"])] += 1
            deltas[(ireadmodel.ALL_COMMUNITIES, row["status"])] += 1
            if raw_task is not None:
                task_rows.append(dreadmodel.task_row(raw_task))
        t1 = time.perf_counter()
        with readside.begin(TENANT) as conn:
            conn.execute(issues.insert(), issue_rows)
            if task_rows:
                conn.execute(tasks.insert(), task_rows)
        made += t1 - t0
        wrote += time.perf_counter() - t1
        stats["tasks"] += len(task_rows)
        stats["overdue"] += sum(
            1 for t in task_rows if not t["finished"] and t["complete_by"] is not None and t["complete_by"] < NOW
        )
        done = n + len(issue_rows)
        if done % 10_000 == 0 or done == stop:
            print(
                f"[bench] loaded {done} of {stop} issues ({stats['tasks']} tasks) in "
                f"{time.perf_counter() - started:.0f} s (documents -> rows {made:.0f} s, inserts {wrote:.0f} s)",
                flush=True,
            )
    _count_changes(deltas)


# ---------------------------------------------------------------- measuring


@dataclass
class Query:
    name: str
    grpc_call: Callable[[int], Any]  # the i-th repetition through the service
    sql_call: Callable[[int], Any]  # the same through the read-model function alone
    figures: dict[int, tuple[list[float], list[float]]] = field(default_factory=dict)  # size -> (gRPC, SQL)


class Caller:
    """gRPC stubs of intake and dispatch with a minted service principal in the tenant."""

    def __init__(self) -> None:
        self.settings = get_settings()
        self.intake = ipb_grpc.IntakeServiceStub(grpc.insecure_channel(self.settings.address("intake")))
        self.dispatch = dpb_grpc.DispatchServiceStub(grpc.insecure_channel(self.settings.address("dispatch")))
        self._token = ""
        self._minted = 0.0

    def md(self) -> list[tuple[str, str]]:
        if time.monotonic() - self._minted > 30:
            principal = Principal(sub="bench:read_scale", role="service", tenants=(TENANT,))
            self._token = mint(principal, self.settings.principal_secret, ttl_seconds=120)
            self._minted = time.monotonic()
        return [(METADATA_KEY, self._token), (TENANT_KEY, TENANT)]


def timed(fn: Callable[[int], Any], i: int) -> float:
    t0 = time.perf_counter()
    fn(i)
    return (time.perf_counter() - t0) * 1000


def tenant_pairs(limit: int = 60) -> list[tuple[str, str]]:
    """(status, category) pairs of the tenant's issues, busiest first."""
    c = ireadmodel.ISSUES.c
    with readside.connect(TENANT) as conn:
        rows = conn.execute(
            select(c.status, c.category, func.count())
            .group_by(c.status, c.category)
            .order_by(func.count().desc())
            .limit(limit)
        ).all()
    return [(r.status, r.category) for r in rows]


def queries(caller: Caller, rng: random.Random) -> list[Query]:
    """The queries of this size, their parameters drawn now (deep-page tokens walked through the service)."""
    pairs = tenant_pairs()
    picks = [rng.choice(pairs) for _ in range(REPS)]
    md = caller.md
    checked = {p: idomain.check_filter(idomain.IssueFilter(status=p[0], category=p[1]), CATEGORY_CODES) for p in pairs}

    def grpc_list(i: int) -> Any:
        s, cat = picks[i]
        return caller.intake.ListIssues(ipb.ListIssuesRequest(status=s, category=cat, page_size=20), metadata=md())

    def sql_list(i: int) -> Any:
        return ireadmodel.list_issues(checked[picks[i]], 20, "")

    # Deep pages: per busy pair, the token after 1,000 issues (10 pages of 100, as the service returns them).
    deep: list[tuple[tuple[str, str], str]] = []
    for s, cat in pairs[:10]:
        token = ""
        for _ in range(10):
            resp = caller.intake.ListIssues(
                ipb.ListIssuesRequest(status=s, category=cat, page_size=100, page_token=token), metadata=md()
            )
            if not resp.next_page_token:
                break
            token = resp.next_page_token
        if token:
            deep.append(((s, cat), token))

    def grpc_deep(i: int) -> Any:
        (s, cat), token = deep[i % len(deep)]
        req = ipb.ListIssuesRequest(status=s, category=cat, page_size=20, page_token=token)
        return caller.intake.ListIssues(req, metadata=md())

    def sql_deep(i: int) -> Any:
        pair, token = deep[i % len(deep)]
        return ireadmodel.list_issues(checked[pair], 20, token)

    def search(word: str) -> tuple[Callable[[int], Any], Callable[[int], Any]]:
        flt = idomain.check_filter(idomain.IssueFilter(text=word), CATEGORY_CODES)
        return (
            lambda i: caller.intake.ListIssues(ipb.ListIssuesRequest(text=word, page_size=20), metadata=md()),
            lambda i: ireadmodel.list_issues(flt, 20, ""),
        )

    communities = [c for c, _ in COMMUNITIES]

    def overdue(scoped: bool) -> tuple[Callable[[int], Any], Callable[[int], Any]]:
        def community(i: int) -> str:
            return communities[i % len(communities)] if scoped else ""

        return (
            lambda i: caller.dispatch.ListOverdue(
                dpb.ListOverdueRequest(community_id=community(i), deadline="completion", page_size=20), metadata=md()
            ),
            lambda i: dreadmodel.list_overdue(community(i), "completion", 20, None, datetime.now(UTC)),
        )

    def counts(scoped: bool) -> tuple[Callable[[int], Any], Callable[[int], Any]]:
        def community(i: int) -> str:
            return communities[i % len(communities)] if scoped else ""

        return (
            lambda i: caller.intake.CountIssues(ipb.CountIssuesRequest(community_id=community(i)), metadata=md()),
            lambda i: ireadmodel.count_issues(community(i)),
        )

    out = [
        Query("issues by status+category, page 1", grpc_list, sql_list),
        Query("issues by status+category, deep page", grpc_deep, sql_deep),
        Query(f"search {COMMON_WORD} (common), page 1", *search(COMMON_WORD)),
        Query(f"search {RARE_WORD} (rare), page 1", *search(RARE_WORD)),
        Query("overdue (completion), page 1", *overdue(False)),
        Query("overdue (completion), community", *overdue(True)),
        Query("count by status, tenant", *counts(False)),
        Query("count by status, community", *counts(True)),
    ]
    if not deep:
        out.pop(1)
    return out


def measure(size: int, qs: list[Query]) -> None:
    principal = Principal(sub="bench:read_scale", role="service", tenants=(TENANT,))
    for n, q in enumerate(qs, 1):
        for i in range(10):  # warm: connections, plans, caches
            q.grpc_call(i)
        grpc_ms = [timed(q.grpc_call, i) for i in range(REPS)]
        with context.bound(tenant=TENANT, principal=principal):
            for i in range(10):
                q.sql_call(i)
            sql_ms = [timed(q.sql_call, i) for i in range(REPS)]
        q.figures[size] = (grpc_ms, sql_ms)
        print(
            f"[bench] {size} issues: {n}/{len(qs)} {q.name}: gRPC p99 {percentile(grpc_ms, 99):.1f} ms, "
            f"SQL p99 {percentile(sql_ms, 99):.1f} ms",
            flush=True,
        )


def show(size: int, qs: list[Query]) -> None:
    print(f"\n{size} issues in {TENANT} ({REPS} calls each; gRPC = what a caller waits for, SQL = the read alone):")
    for q in qs:
        if size not in q.figures:
            continue
        g, s = q.figures[size]
        print(
            f"  {q.name:40s} gRPC p50={percentile(g, 50):6.1f} p99={percentile(g, 99):6.1f} max={max(g):6.1f} ms"
            f"  | SQL p50={percentile(s, 50):6.1f} p99={percentile(s, 99):6.1f} ms  mean={statistics.fmean(g):.1f}"
        )


def hits(word: str) -> int:
    c = ireadmodel.ISSUES.c
    with readside.connect(TENANT) as conn:
        return int(conn.execute(select(func.count()).where(c.search.like(f"%{word}%"))).scalar_one())


def explain(word: str) -> None:
    """EXPLAIN ANALYZE of the search list_issues runs for this word (to read next to its figures)."""
    needle = ireadmodel.normalize(word)
    sql = (
        f"EXPLAIN (ANALYZE, BUFFERS) SELECT id, created_at, body FROM {readside.schema_for(TENANT)}.intake_issues "
        "WHERE grams @> CAST(:grams AS text[]) AND search LIKE :like ORDER BY created_at DESC, id DESC LIMIT 21"
    )
    with readside.connect(TENANT) as conn:
        for (line,) in conn.execute(text(sql), {"grams": ireadmodel.query_grams(needle), "like": f"%{needle}%"}):
            print(f"    {line}")


# ---------------------------------------------------------------- audit (its own benchmark)


def audit_part() -> None:
    if importlib.util.find_spec("services.common.audit_readmodel") is None:
        print("audit: see bench/audit_read_scale.py")
        return
    from services.common import audit_readmodel  # type: ignore[attr-defined,unused-ignore]

    ms: list[float] = []
    before = None
    for _ in range(REPS):
        t0 = time.perf_counter()
        _, before = audit_readmodel.page(tenant=TENANT, before=before, limit=50)
        ms.append((time.perf_counter() - t0) * 1000)
    print(
        f"audit: {TENANT}'s audit page (as many entries as this stack logged) p50={percentile(ms, 50):.1f} "
        f"p99={percentile(ms, 99):.1f} ms; at 1,000,000 entries see bench/audit_read_scale.py"
    )


# ---------------------------------------------------------------- projection lag


def projector_lag() -> dict[str, tuple[float, float]]:
    """hongling_projection_lag_seconds of the projector: projection -> (count, sum)."""
    settings = get_settings()
    try:
        body = requests.get(f"http://127.0.0.1:{settings.metrics_port('projector')}/metrics", timeout=5).text
    except requests.RequestException:
        return {}
    out: dict[str, tuple[float, float]] = {}
    for family in text_string_to_metric_families(body):
        if family.name != "hongling_projection_lag_seconds":
            continue
        for sample in family.samples:
            name = sample.labels.get("projection", "")
            count, total = out.get(name, (0.0, 0.0))
            if sample.name.endswith("_count"):
                count = sample.value
            elif sample.name.endswith("_sum"):
                total = sample.value
            out[name] = (count, total)
    return out


def lag_phase() -> bool:
    """LAG_RATE issues/s through the gateway for LAG_SECONDS; each one's lag from its 201 to its row."""
    settings = get_settings()
    headers = admin_headers(settings)
    ensure_grid(settings, TENANT, headers)
    url = f"http://127.0.0.1:{settings.gateway_port}/api/v1/tenants/{TENANT}/issues"
    local = threading.local()
    categories = ("property_repair", "sanitation", "parking", "greening", "noise", "road_facility", "elderly_care")
    lock = threading.Lock()
    outstanding: dict[str, float] = {}  # id -> its 201 (perf_counter)
    lags: list[float] = []
    posts: list[float] = []
    errors: list[str] = []
    sending = threading.Event()
    sending.set()

    def post(i: int) -> None:
        rng = random.Random(f"lag-{SEED}-{time.time_ns()}-{i}")
        session = getattr(local, "session", None) or requests.Session()
        local.session = session
        _, title, description = _text(rng)
        body = {
            "title": title,
            "description": description,
            "channel": "online",
            "category": rng.choice(categories),
            "location": random_point(rng),
        }
        t0 = time.perf_counter()
        try:
            resp = session.post(url, json=body, headers=headers, timeout=30)
            at = time.perf_counter()
            if resp.status_code != 201:
                raise RuntimeError(f"{resp.status_code} {resp.text[:200]}")
            ident = resp.json()["issue"]["id"]
        except Exception as exc:  # counted, and the first one shown (a pool would swallow it)
            with lock:
                errors.append(f"{exc.__class__.__name__}: {exc}")
            return
        with lock:
            outstanding[ident] = at
            posts.append((at - t0) * 1000)

    def poll() -> None:
        c = ireadmodel.ISSUES.c
        query = select(c.id).where(c.id == any_(bindparam("ids", type_=ARRAY(Text))))
        with readside.connect(TENANT) as conn:
            while sending.is_set() or outstanding:
                with lock:
                    ids = list(outstanding)
                if ids:
                    found = conn.execute(query, {"ids": ids}).scalars().all()
                    conn.rollback()  # a fresh snapshot for the next look
                    now = time.perf_counter()
                    with lock:
                        for ident in found:
                            lags.append(now - outstanding.pop(ident))
                time.sleep(0.02)

    metrics_before = projector_lag()
    poller = threading.Thread(target=poll, name="lag-poller", daemon=True)
    poller.start()
    n = int(LAG_SECONDS * LAG_RATE)
    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=32) as pool:
        for i in range(n):
            due = started + i / LAG_RATE
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            pool.submit(post, i)
            if i and i % int(5 * LAG_RATE) == 0:
                print(f"[bench] lag: {i} issues sent in {time.perf_counter() - started:.0f} s", flush=True)
        sent_in = time.perf_counter() - started  # the last one handed to the pool (not counting its wait)
    until = time.monotonic() + 30
    while outstanding and time.monotonic() < until:
        time.sleep(0.1)
    missing = len(outstanding)
    sending.clear()
    with lock:
        outstanding.clear()
    poller.join(timeout=5)
    metrics_after = projector_lag()

    print(
        f"\nprojection lag while {LAG_RATE:.0f} issues/s come in through the gateway ({n} sent in {sent_in:.1f} s = "
        f"{n / sent_in:.1f}/s; {len(posts)} accepted, {len(errors)} errors, {missing} not seen after 30 s):"
    )
    if errors:
        print(f"  first error: {errors[0]}")
    if posts:
        print(f"  POST /issues           p50={percentile(posts, 50):.0f} ms p99={percentile(posts, 99):.0f} ms")
    ok = bool(lags) and missing == 0 and not errors
    if lags:
        p99 = percentile(lags, 99)
        ok = ok and p99 < GOAL_LAG_P99_S
        print(
            f"  201 -> row in intake_issues: p50={percentile(lags, 50):.3f} s p99={p99:.3f} s max={max(lags):.3f} s "
            f"(n={len(lags)}; polled every 20 ms)  goal p99 < {GOAL_LAG_P99_S:.0f} s: {'met' if ok else 'MISSED'}"
        )
    for name, (count, total) in sorted(metrics_after.items()):
        c0, s0 = metrics_before.get(name, (0.0, 0.0))
        dc, ds = count - c0, total - s0
        mean = f"mean {1000 * ds / dc:.0f} ms" if dc else "no events"
        print(
            f"  projector's hongling_projection_lag_seconds{{projection={name}}}: "
            f"+{dc:.0f} state records, sum {ds:.1f} s, {mean}"
        )
    if not metrics_after:
        print("  (the projector's metrics were not reachable)")
    return ok


# ---------------------------------------------------------------- main


def main() -> int:
    met = lag_ok = True
    if "queries" in PHASES:
        met = queries_phase()
    if "lag" in PHASES:
        print(f"[bench] lag phase: the stack settled in {settle():.0f} s", flush=True)
        lag_ok = lag_phase()
    print(f"\nall goals met: {'yes' if met and lag_ok else 'NO'}")
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    return 0


def queries_phase() -> bool:
    """Load SIZES issues and measure every query at each size; True when every goal was met."""
    rng = random.Random(SEED)
    caller = Caller()
    print(f"[bench] tenant {TENANT}, sizes {', '.join(map(str, SIZES))}, {REPS} calls per query, seed {SEED}")
    remove_earlier()
    stats: dict[str, Any] = {"tasks": 0, "overdue": 0}
    all_queries: list[Query] = []
    loaded = 0
    for size in SIZES:
        load(rng, loaded, size, stats)
        loaded = size
        print(
            f"[bench] {size} issues, {stats['tasks']} tasks ({stats['overdue']} overdue); "
            f"VACUUM ANALYZE in {vacuum_analyze():.1f} s",
            flush=True,
        )
        print(f"[bench] {size} issues: {hits(COMMON_WORD)} hold {COMMON_WORD}, {hits(RARE_WORD)} hold {RARE_WORD}")
        print(f"[bench] load average before measuring: {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)", flush=True)
        qs = queries(caller, random.Random(f"{SEED}-{size}"))
        measure(size, qs)
        for q in qs:
            have = next((x for x in all_queries if x.name == q.name), None)
            if have is None:
                all_queries.append(q)
            else:
                have.figures.update(q.figures)
        show(size, qs)

    small, large = SIZES[0], SIZES[-1]
    print(f"\ngoals: p99 < {GOAL_P99_MS:.0f} ms at {large}, and p99 at {large} <= {GOAL_GROWTH:.0f}x p99 at {small}")
    met = True
    for q in all_queries:
        if small not in q.figures or large not in q.figures:
            continue
        p_small, p_large = percentile(q.figures[small][0], 99), percentile(q.figures[large][0], 99)
        ratio = p_large / p_small if p_small else float("inf")
        ok = p_large < GOAL_P99_MS and ratio <= GOAL_GROWTH
        met = met and ok
        print(f"  {q.name:40s} p99 {p_small:6.1f} -> {p_large:6.1f} ms  x{ratio:4.2f}  {'met' if ok else 'MISSED'}")
    print(f"\nEXPLAIN ANALYZE of the common-word search at {large} issues:")
    explain(COMMON_WORD)
    print()
    audit_part()
    return met


if __name__ == "__main__":
    sys.exit(main())
