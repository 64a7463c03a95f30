"""The lifecycle's rules, pure Python: publication ids, statuses and their steps, and the readable diff a
correction states (`changes`). No infrastructure: unit-tested alone (tests/unit/test_publication_lifecycle.py).

A version's id is "<kind>:<scope>:<period>:v<n>"; "<kind>:<scope>:<period>" names the current released version
of that series. A scope is a community id (which may itself hold ':') or "*" (the tenant), so an id is read
from both ends: the kind first, the version and the period last, the scope is what lies between.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

DRAFT, REVIEWED, RETURNED, RELEASED = "draft", "reviewed", "returned", "released"
STATUSES = (DRAFT, REVIEWED, RETURNED, RELEASED)
STATUS_ZH = {DRAFT: "草稿", REVIEWED: "已审核", RETURNED: "已退回", RELEASED: "已发布"}
KIND_RE = re.compile(r"^(monthly|boards|report)$")
MONTH_RE = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
QUARTER_RE = re.compile(r"^(\d{4})Q([1-4])$")
PERIOD_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$|^\d{4}Q[1-4]$")
SCOPE_RE = re.compile(r"^(\*|[A-Za-z0-9][A-Za-z0-9._:-]{0,63})$")
VERSION_RE = re.compile(r"^v([1-9]\d{0,5})$")
MAX_NOTE = 2000


class Invalid(ValueError):
    """Bad input, naming the field (the handlers answer INVALID_ARGUMENT)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class PubId:
    kind: str
    scope: str
    period: str
    version: int  # 0: the current released version

    @property
    def series(self) -> str:
        return f"{self.kind}:{self.scope}:{self.period}"

    def of(self, version: int) -> str:
        return version_id(self.kind, self.scope, self.period, version)


def version_id(kind: str, scope: str, period: str, version: int) -> str:
    return f"{kind}:{scope}:{period}:v{version}"


def parse_id(pub_id: str) -> PubId:
    """A publication id, or Invalid (field "id")."""
    bad = Invalid(
        f"发布编号格式不正确 (id must be <kind>:<scope>:<period>[:v<n>], not {pub_id[:80]!r})",
        "id",
    )
    parts = pub_id.strip().split(":")
    if len(parts) < 3:
        raise bad
    version = 0
    found = VERSION_RE.match(parts[-1])
    if found:
        version = int(found.group(1))
        parts = parts[:-1]
    if len(parts) < 3:
        raise bad
    kind, period, scope = parts[0], parts[-1], ":".join(parts[1:-1])
    if not KIND_RE.match(kind) or not PERIOD_RE.match(period) or not SCOPE_RE.match(scope):
        raise bad
    return PubId(kind, scope, period, version)


def check_series(kind: str, scope: str, period: str) -> None:
    """The shape of (kind, scope, period) before the kind's own checks."""
    if not KIND_RE.match(kind):
        raise Invalid("种类应为 monthly、boards 或 report (kind must be monthly, boards or report)", "kind")
    if not SCOPE_RE.match(scope):
        raise Invalid("范围应为社区编号或 * (scope must be a community id or *)", "scope")
    if not PERIOD_RE.match(period):
        raise Invalid("期间格式应为YYYY-MM或YYYYQn (period must be YYYY-MM or YYYYQn)", "period")


def period_start(period: str) -> tuple[int, int]:
    """(year, first month) of a month or quarter: what periods sort by."""
    m = MONTH_RE.match(period)
    if m:
        return int(m.group(1)), int(m.group(2))
    q = QUARTER_RE.match(period)
    if q:
        return int(q.group(1)), 3 * int(q.group(2)) - 2
    raise Invalid("期间格式应为YYYY-MM或YYYYQn (period must be YYYY-MM or YYYYQn)", "period")


def check_review(approve: bool, note: str) -> str:
    note = note.strip()
    if len(note) > MAX_NOTE:
        raise Invalid(f"审核意见过长 (note must be at most {MAX_NOTE} characters)", "note")
    if not approve and not note:
        raise Invalid("退回须说明理由 (a note is required to return a draft)", "note")
    return note


# ---------------------------------------------------------------- the readable diff

# Header and bookkeeping keys that are not what a reader compares.
SKIP = frozenset({"schema", "as_of", "audit_anchor", "kind", "tenant", "scope", "period", "period_zh"})
# List items are matched by the first of these keys they have.
ITEM_KEYS = ("ref", "community_id", "kind", "key", "fund", "rank", "item_zh")
# What one item of a list is called (by the list's key).
NOUNS = {
    "issues": "事项",
    "whistles": "吹哨",
    "meetings": "会议",
    "decisions": "议题",
    "funds": "资金",
    "measures": "指标",
    "rates": "指标",
    "boards": "榜单",
    "entries": "上榜",
    "rankings": "排名",
    "ledger": "减负台账",
    "overdue_tasks": "超期任务",
    "failed_verifications": "验收未通过",
    "silent_units": "未响应单位",
    "reasons": "原因",
    "explanation": "说明",
}
LABELS = {
    "summary": "概况",
    "status": "状态",
    "verification": "验收",
    "rating": "评价",
    "handled_by": "办理单位",
    "done_on": "办结日期",
    "received_on": "受理日期",
    "overdue": "超期",
    "category": "类别",
    "grid_zh": "网格",
    "call_type": "吹哨类型",
    "issues_received": "受理事项",
    "issues_handled": "办结事项",
    "verified": "验收通过",
    "verification_failed": "验收未通过",
    "rated": "已评价",
    "rating_average": "平均评价",
    "whistles": "吹哨",
    "meetings": "会议",
    "problem_of_month": "每月一题",
    "issues": "事项数",
    "handled": "已办结",
    "actions_zh": "措施",
    "topic_zh": "题目",
    "opening_fen": "期初",
    "allocated_fen": "拨入",
    "spent_fen": "支出",
    "closing_fen": "期末",
    "answered_in_time": "按时响应",
    "answered_late": "迟到响应",
    "not_answered": "未响应",
    "invited": "应到",
    "on_time": "按时",
    "late": "迟到",
    "excused": "请假",
    "absent": "缺席",
    "decision": "决定",
    "votes": "表决",
    "actions": "行动项",
    "title_zh": "标题",
    "place_zh": "地点",
    "held_on": "日期",
    "score": "得分",
    "name": "名称",
    "workload": "工作量",
    "composite": "综合得分",
    "rate": "比率",
    "numerator": "分子",
    "denominator": "分母",
    "formula": "公式",
    "evaluation_version": "评价版本",
    "title_en": "英文标题",
    "scope_name_zh": "名称",
    "tenant_name_zh": "街道/镇",
    "data_requests": "数据请求",
    "assistance_tasks": "协助任务",
    "approved": "批准",
    "narrowed": "缩减",
    "rejected": "驳回",
    "refused": "拒绝",
    "assessment_refused": "拒绝考核任务",
    "quota_granted": "配额",
    "quota_used": "已用配额",
    "count": "次数",
}


def _noun(list_key: str) -> str:
    return NOUNS.get(list_key, LABELS.get(list_key, list_key))


def _item_key(item: Any) -> tuple[str, str] | None:
    if not isinstance(item, Mapping):
        return None
    for k in ITEM_KEYS:
        if k in item and isinstance(item[k], (str, int)) and not isinstance(item[k], bool):
            return k, str(item[k])
    return None


def _item_name(item: Mapping[str, Any], ident: str) -> str:
    for k in ("name_zh", "title_zh", "fund_zh", "community_name_zh", "item_zh", "name"):
        v = item.get(k)
        if isinstance(v, str) and v:
            return v if k != "name" or ident.isdigit() else ident
    return ident


def _fmt(key: str, value: Any) -> str:
    if value is None or value == "" or value == []:
        return "无"
    if isinstance(value, bool):
        return "是" if value else "否"
    if key == "rate" and isinstance(value, (int, float)):
        return f"{value * 100:.1f}%"
    if key.endswith("_fen") and isinstance(value, int):
        return f"{value / 100:.2f}元"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "、".join(_fmt(key, v) for v in value)
    if isinstance(value, Mapping):
        return "、".join(f"{k} {_fmt(k, v)}" for k, v in sorted(value.items()))
    return str(value)


def changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """What changed from `old` to `new` (two contents of one kind), as readable Chinese lines, in the content's
    order: scalars by their label ("满意率：85.0% → 90.0%", "事项 iss-1 状态：办理中 → 已验收", codes shown by their
    *_zh labels), list items matched by ref / community_id / kind / key / rank ("新增事项 iss-2", "删除事项 iss-3").
    Deterministic: the same two contents give the same lines."""
    out: list[str] = []
    _walk_dict(old, new, "", out, top=True)
    return out


def _join(prefix: str, label: str) -> str:
    return f"{prefix} {label}" if prefix else label


def _walk_dict(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str, out: list[str], top: bool = False) -> None:
    keys = sorted(set(old) | set(new))
    rate_changed = "rate" in keys and old.get("rate") != new.get("rate")
    for k in keys:
        if (top and k in SKIP) or (k.endswith("_zh") and k[: -len("_zh")] in keys):
            continue  # a code's label is shown with the code
        if k in ("numerator", "denominator") and rate_changed:
            continue
        a, b = old.get(k), new.get(k)
        if a == b:
            continue
        label = LABELS.get(k, k)
        if isinstance(a, list) and isinstance(b, list) and _keyed(a, b):
            _walk_list(k, a, b, prefix, out)
        elif isinstance(a, Mapping) and isinstance(b, Mapping):
            _walk_dict(a, b, _join(prefix, label), out)
        else:
            zh = f"{k}_zh"
            shown_a = old.get(zh) if zh in old and old.get(zh) else a
            shown_b = new.get(zh) if zh in new and new.get(zh) else b
            where = prefix if (k == "rate" and prefix) else _join(prefix, label)
            out.append(f"{where}：{_fmt(k, shown_a)} → {_fmt(k, shown_b)}")


def _keyed(a: Sequence[Any], b: Sequence[Any]) -> bool:
    items = [*a, *b]
    return bool(items) and all(_item_key(i) is not None for i in items)


def _walk_list(key: str, old: Sequence[Any], new: Sequence[Any], prefix: str, out: list[str]) -> None:
    noun = _noun(key)
    before = {_item_key(i): i for i in old}
    after = {_item_key(i): i for i in new}
    order = [k for k in after if k is not None] + [k for k in before if k not in after and k is not None]
    for ik in order:
        a, b = before.get(ik), after.get(ik)
        if a == b:
            continue
        if a is None and b is not None:
            out.append(f"{prefix + ' ' if prefix else ''}新增{noun} {_item_name(b, ik[1])}")
        elif b is None and a is not None:
            out.append(f"{prefix + ' ' if prefix else ''}删除{noun} {_item_name(a, ik[1])}")
        elif a is not None and b is not None:
            name = _item_name(b, ik[1])
            _walk_dict(a, b, _join(prefix, name if ik[0] == "key" else f"{noun} {name}"), out)
