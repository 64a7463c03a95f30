"""The assessment-task rule (考核任务) in the field's wording: what it refuses, what it lets through, and what it
lets through with a flag for the approver (gateway/governance/domain.py: ASSESSMENT_WORDING, FLAGGED_WORDING)."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from gateway.governance.domain import ASSESSMENT_WORDING, validate_request
from services.common.errors import PermissionDenied

TODAY = date(2026, 11, 27)


def assistance(task: str, **kw: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "kind": "assistance_task",
        "purpose": "协助社区开展为民服务",
        "tenant": "taiqian",
        "community_id": "jiade",
        "public_affairs_item_id": "pa-elderly",
        "funding": {"amount_yuan": 3000, "source": "区民政局专项经费", "working_conditions": "派员到场"},
        "starts_on": "2026-12-01",
        "ends_on": "2026-12-31",
        "tasks": [task],
    }
    data.update(kw)
    return data


# The phrases the rule refuses, each in a task as a department might write it, with the phrase it must name.
REFUSED = [
    ("年度社区工作目标责任考核", "目标责任考核"),
    ("开展文明社区考核", "考核"),
    ("社区党建工作考评", "考评"),
    ("组织各社区卫生评比", "评比"),
    ("为社区垃圾分类工作打分", "打分"),
    ("公布各社区创建工作排名", "排名"),
    ("社区服务满意度排行榜", "排行"),
    ("按得分确定社区排位", "排位"),
    ("配合区里开展安全生产督查", "督查"),
    ("做好迎检准备，整理材料", "迎检"),
    ("创卫工作检查验收", "检查验收"),
    ("Annual community ASSESSMENT", "assessment"),
    ("staff appraisal of community workers", "appraisal"),
    ("Ranking of communities by response time", "ranking"),
    ("scoring sheets for each community", "scoring"),
]

# Legitimate assistance a department may ask a community for: let through, with no flag.
LET_THROUGH = [
    "协助入户登记高龄老人信息",
    "组织居民参加免费体检",
    "协助发放防汛物资",
    "张贴疫苗接种通知",
    "参会人员排名不分先后",
    "本次活动不排名、不打分",
    "协助开展反诈宣传进楼道",
]

# Let through, flagged for the approver with the phrase and why.
FLAGGED = [
    ("协助开展燃气安全检查", "检查"),
    ("配合老旧小区改造工程验收", "验收"),
    ("协助开展居民需求评估", "评估"),
    ("组织居民参加文明家庭评选", "评选"),
    ("协助整理防汛台账", "台账"),
]


@pytest.mark.parametrize(("task", "phrase"), REFUSED)
def test_the_fields_assessment_wording_is_refused_and_the_refusal_says_why(task: str, phrase: str) -> None:
    with pytest.raises(PermissionDenied) as exc:
        validate_request(assistance(task), "区某局", TODAY)
    assert exc.value.reason == "assessment_task_refused"
    message = str(exc.value.message)
    why = next(w.why for w in ASSESSMENT_WORDING if w.phrase == phrase)
    assert f"found {phrase!r}: {why}" in message and "考核任务" in message  # the phrase, and why it is one


@pytest.mark.parametrize(("task", "phrase"), REFUSED[:6])
def test_the_wording_is_refused_in_the_title_and_purpose_too(task: str, phrase: str) -> None:
    for where in ({"title": task}, {"purpose": task}):
        with pytest.raises(PermissionDenied, match=phrase):
            validate_request(assistance("协助发放防汛物资", **where), "区某局", TODAY)


@pytest.mark.parametrize("task", LET_THROUGH)
def test_legitimate_assistance_tasks_are_let_through_unflagged(task: str) -> None:
    req = validate_request(assistance(task), "区某局", TODAY)
    assert req.tasks == (task,) and req.flags == ()


@pytest.mark.parametrize(("task", "phrase"), FLAGGED)
def test_wording_that_may_hide_an_assessment_is_let_through_with_a_flag(task: str, phrase: str) -> None:
    req = validate_request(assistance(task), "区某局", TODAY)
    assert req.flags == (phrase,)


def test_a_refused_phrase_is_not_also_flagged() -> None:
    """检查验收 is refused as a whole; its 检查 and 验收 are not separate flags of a request that passes."""
    req = validate_request(assistance("协助开展燃气安全检查", purpose="为民服务，不纳入考核"), "区某局", TODAY)
    assert req.flags == ("检查",)
    with pytest.raises(PermissionDenied, match="'检查验收'"):
        validate_request(assistance("创卫工作检查验收"), "区某局", TODAY)
