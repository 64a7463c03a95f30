"""Sample contents of each kind (services/publication/content.py), realistic and complete: what the channels'
unit tests render, what the builders' output is compared with in shape, and what the portal's pages show in
their tests before a real month exists. `monthly(n)` makes a month with n handled issues (the bench's size).
"""

from __future__ import annotations

from services.publication.content import (
    Anchor,
    BoardsContent,
    IssueLine,
    MonthlyContent,
    Rate,
    ReportContent,
)

ANCHOR: Anchor = {
    "seq": 4182,
    "hash": "9f2c4be1a1d04c7e8b3f1e6a2d5c7b9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8",
    "at": "2026-11-30T16:00:00Z",
    "signature": "ZmFrZS1zaWduYXR1cmUtZm9yLXRoZS1zYW1wbGUtb25seS1ub3QtYS1yZWFsLW9uZQ==",
    "public_key": "c2FtcGxlLXB1YmxpYy1rZXktMzItYnl0ZXMtbG9uZy4=",
}

_CATEGORIES = (
    ("environment", "环境卫生", "第一网格"),
    ("lighting", "楼道照明", "第二网格"),
    ("facilities", "公共设施", "第三网格"),
    ("parking", "停车秩序", "第一网格"),
    ("greening", "绿化养护", "第四网格"),
)
_HELPERS = ("泰山物业红色服务队", "岱宗社区志愿者协会", "财源街道卫生院", "王**", "李**")
_STATUS_ZH = {"verified": "已验收", "rated": "已评价", "done": "已办结", "in_progress": "办理中"}


def rates(response: float | None = 0.92, resolution: float | None = 0.88) -> list[Rate]:
    def r(key: str, zh: str, en: str, num: float, den: float, lower: bool = False) -> Rate:
        return {
            "key": key,
            "name_zh": zh,
            "name_en": en,
            "numerator": num,
            "denominator": den,
            "rate": None if den == 0 else round(num / den, 4),
            "lower_is_better": lower,
        }

    return [
        r("response", "响应率", "Response rate", 46 if response else 0, 50 if response else 0),
        r("resolution", "解决率", "Resolution rate", 44 if resolution else 0, 50 if resolution else 0),
        r("satisfaction", "满意率", "Satisfaction rate", 38, 40),
        r("on_time", "按时办结率", "On-time completion", 41, 44),
        r("reopen", "返工率", "Reopen rate", 2, 44, True),
    ]


def issue(n: int) -> IssueLine:
    category, category_zh, grid = _CATEGORIES[n % len(_CATEGORIES)]
    status = ("rated", "verified", "done", "in_progress")[n % 4]
    day = 1 + n % 28
    return {
        "ref": f"iss-2611{n:06d}",
        "category": category,
        "category_zh": category_zh,
        "grid_zh": grid,
        "call_type": ("service", "tackling", "emergency")[n % 3],
        "call_type_zh": ("服务", "攻坚", "应急")[n % 3],
        "received_on": f"2026-11-{day:02d}",
        "done_on": None if status == "in_progress" else f"2026-11-{min(28, day + 1):02d}",
        "status": status,
        "status_zh": _STATUS_ZH[status],
        "handled_by": [_HELPERS[n % len(_HELPERS)], _HELPERS[(n + 2) % len(_HELPERS)]],
        "verification": {"rated": "passed", "verified": "passed", "done": "pending", "in_progress": ""}[status],
        "verification_zh": {"rated": "通过", "verified": "通过", "done": "待验收", "in_progress": ""}[status],
        "rating": 5 - n % 2 if status == "rated" else None,
        "overdue": n % 17 == 0,
    }


def monthly(handled: int = 12) -> MonthlyContent:
    issues = [issue(n) for n in range(handled)]
    return {
        "schema": 1,
        "kind": "monthly",
        "tenant": "daimiao",
        "tenant_name_zh": "岱庙街道",
        "scope": "c-daimiao-01",
        "scope_name_zh": "岱宗社区",
        "period": "2026-11",
        "period_zh": "2026年11月",
        "as_of": "2026-12-01T00:00:00+08:00",
        "title_zh": "岱宗社区 2026年11月 一月一公示",
        "title_en": "Daizong Community — monthly public notice, November 2026",
        "summary": {
            "issues_received": handled + 3,
            "issues_handled": sum(1 for i in issues if i["status"] != "in_progress"),
            "verified": sum(1 for i in issues if i["verification"] == "passed"),
            "verification_failed": 1,
            "rated": sum(1 for i in issues if i["rating"] is not None),
            "rating_average": 4.6,
            "whistles": 3,
            "meetings": 1,
            "overdue": sum(1 for i in issues if i["overdue"]),
        },
        "issues": issues,
        "whistles": [
            {
                "ref": "wh-0001",
                "blown_on": "2026-11-03",
                "call_type": "tackling",
                "call_type_zh": "攻坚",
                "category_zh": "环境卫生",
                "answered_in_time": ["泰山物业红色服务队", "岱宗社区志愿者协会"],
                "answered_late": ["财源街道卫生院"],
                "not_answered": ["东岳书画院"],
            },
            {
                "ref": "wh-0002",
                "blown_on": "2026-11-15",
                "call_type": "emergency",
                "call_type_zh": "应急",
                "category_zh": "公共设施",
                "answered_in_time": ["泰山物业红色服务队"],
                "answered_late": [],
                "not_answered": [],
            },
        ],
        "meetings": [
            {
                "ref": "mt-0001",
                "held_on": "2026-11-12",
                "title_zh": "11月红领益家联盟联席会议",
                "place_zh": "岱宗社区第一网格党群服务站",
                "invited": 12,
                "on_time": 9,
                "late": 1,
                "excused": 1,
                "absent": 1,
                "decisions": [
                    {
                        "item_zh": "小区楼道照明集中维修",
                        "decision": "agreed",
                        "decision_zh": "通过",
                        "votes": "赞成 10 · 反对 0 · 弃权 1",
                        "actions": 2,
                    },
                    {
                        "item_zh": "增设非机动车充电桩",
                        "decision": "deferred",
                        "decision_zh": "暂缓",
                        "votes": "",
                        "actions": 0,
                    },
                ],
            }
        ],
        "problem_of_month": {
            "topic_zh": "楼道照明 · 第二网格",
            "category": "lighting",
            "category_zh": "楼道照明",
            "grid_zh": "第二网格",
            "issues": 9,
            "handled": 8,
            "actions_zh": ["联席会议议定集中维修（通过）", "吹哨 2 次，报到单位 3 家"],
        },
        "funds": [
            {
                "fund": "party_service",
                "fund_zh": "党组织服务群众经费",
                "opening_fen": 5_000_000,
                "allocated_fen": 2_000_000,
                "spent_fen": 1_234_500,
                "closing_fen": 5_765_500,
            }
        ],
        "measures": rates(),
        "audit_anchor": ANCHOR,
    }


def boards(scope: str = "*") -> BoardsContent:
    def entry(rank: int, kind: str, name: str, score: float) -> dict[str, object]:
        return {
            "rank": rank,
            "subject_kind": kind,
            "name": name,
            "score": score,
            "workload": 30 - rank,
            "explanation": [
                {
                    "key": "response",
                    "name_zh": "响应率",
                    "numerator": 18.0,
                    "denominator": 20.0,
                    "mean": 0.8,
                    "shrunk": 0.872,
                    "weight": 0.2,
                    "points": 17.44,
                },
                {
                    "key": "satisfaction",
                    "name_zh": "满意率",
                    "numerator": 9.0,
                    "denominator": 10.0,
                    "mean": 0.85,
                    "shrunk": 0.883,
                    "weight": 0.25,
                    "points": 22.08,
                },
            ],
        }

    community = scope != "*"
    return {
        "schema": 1,
        "kind": "boards",
        "tenant": "daimiao",
        "tenant_name_zh": "岱庙街道",
        "scope": scope,
        "scope_name_zh": "岱宗社区" if community else "岱庙街道",
        "period": "2026Q3",
        "period_zh": "2026年第三季度",
        "as_of": "2026-10-01T00:00:00+08:00",
        "title_zh": f"{'岱宗社区' if community else '岱庙街道'} 2026年第三季度 先锋榜",
        "title_en": "Pioneer boards, 2026 Q3",
        "evaluation_version": 1,
        "evaluation_changes": "",
        "formula": {
            "version": "2026-1",
            "text_zh": "各项比率取贝叶斯平均 (分子 + k × 榜单均值) ÷ (分母 + k)，k = 5，再按权重加总为 0–100 分",
            "text_en": "Each rate is a Bayesian average (num + k·mean) / (den + k), k = 5, weighted to 0–100",
            "k": 5.0,
            "weights": {
                "response": 0.2,
                "resolution": 0.25,
                "satisfaction": 0.25,
                "on_time": 0.1,
                "reopen": 0.1,
                "duties": 0.1,
            },
        },
        "boards": [
            {
                "kind": "red_property",
                "title_zh": "红色物业光荣榜",
                "title_en": "Red property honour board",
                "entries": [entry(1, "member_unit", "泰山物业红色服务队", 91.2)],  # type: ignore[list-item]
            },
            {
                "kind": "social_org",
                "title_zh": "社会组织人气榜",
                "title_en": "Social organisations' popularity board",
                "entries": [entry(1, "member_unit", "岱宗社区志愿者协会", 88.0)],  # type: ignore[list-item]
            },
            {
                "kind": "party_member",
                "title_zh": "党员先锋榜",
                "title_en": "Party members' pioneer board",
                "entries": [entry(1, "person", "王**", 86.5), entry(2, "person", "李明", 84.1)],  # type: ignore[list-item]
            },
            {
                "kind": "volunteer",
                "title_zh": "志愿者明星榜",
                "title_en": "Volunteer star board",
                "entries": [],
            },
        ],
    }


def report() -> ReportContent:
    return {
        "schema": 1,
        "kind": "report",
        "tenant": "daimiao",
        "tenant_name_zh": "岱庙街道",
        "scope": "*",
        "scope_name_zh": "岱庙街道",
        "period": "2026-11",
        "period_zh": "2026年11月",
        "as_of": "2026-12-01T00:00:00+08:00",
        "title_zh": "岱庙街道 2026年11月 红领益家工作月报",
        "title_en": "Daimiao Subdistrict — monthly report, November 2026",
        "measures": rates(),
        "rankings": [
            {
                "rank": 1,
                "community_id": "c-daimiao-01",
                "community_name_zh": "岱宗社区",
                "composite": 87.5,
                "issues_handled": 120,
                "rates": rates(),
            },
            {
                "rank": 2,
                "community_id": "c-daimiao-02",
                "community_name_zh": "岱庙社区",
                "composite": 81.0,
                "issues_handled": 96,
                "rates": rates(0.8, 0.75),
            },
        ],
        "exceptions": {
            "overdue_tasks": [
                {
                    "community_name_zh": "岱庙社区",
                    "ref": "tsk-0042",
                    "category_zh": "公共设施",
                    "due_on": "2026-11-20",
                    "days_overdue": 10,
                }
            ],
            "failed_verifications": [
                {
                    "community_name_zh": "岱宗社区",
                    "ref": "tsk-0031",
                    "category_zh": "环境卫生",
                    "failed_on": "2026-11-18",
                    "method_zh": "集中评议",
                }
            ],
            "silent_units": [
                {"community_name_zh": "岱宗社区", "name": "东岳书画院", "whistles": 3, "answered": 0, "missed": 3}
            ],
        },
        "ledger": [
            {
                "community_id": "c-daimiao-01",
                "community_name_zh": "岱宗社区",
                "data_requests": 3,
                "assistance_tasks": 2,
                "approved": 2,
                "narrowed": 1,
                "rejected": 1,
                "refused": 2,
                "assessment_refused": 1,
                "quota_granted": 50,
                "quota_used": 17,
                "reasons": [
                    {"reason": "assessment_task_refused", "reason_zh": "考核任务，不得下派", "count": 1},
                    {"reason": "rejected", "reason_zh": "区委区政府驳回", "count": 1},
                ],
            }
        ],
        "audit_anchor": ANCHOR,
    }
