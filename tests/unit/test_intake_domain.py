"""Intake's pure rules: what a valid new issue is, contacts and their masks, attachments by their bytes."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pytest

from services.common.errors import InvalidArgument, PermissionDenied
from services.intake import domain
from services.intake.classify import default_rules
from services.intake.domain import (
    ATTACHMENT_MAX_BYTES,
    DESCRIPTION_MAX,
    AttachmentIn,
    Location,
    new_issue_id,
    validate_new_issue,
)

JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 100
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100
WEBP = b"RIFF\x24\x00\x00\x00WEBPVP8 " + b"\x00" * 100
PDF = b"%PDF-1.7\n" + b"\x00" * 100
POINT = Location(lat=36.19, lon=117.13)


def issue(**kw: object) -> domain.NewIssue:
    args: dict[str, object] = {
        "title": "楼道灯不亮",
        "description": "3号楼2单元楼道灯坏了一周",
        "channel": "online",
        "category": "",
        "location": POINT,
    }
    args.update(kw)
    return validate_new_issue(**args)  # type: ignore[arg-type]


def test_valid_issue_is_trimmed_and_leaves_the_category_to_the_rules() -> None:
    new = issue(title="  楼道灯不亮 ", hazards=[" gas", "gas"])
    assert new.title == "楼道灯不亮"
    assert new.category == ""  # the tenant's catch-all, chosen against its rules
    assert new.hazards == ("gas",)
    assert domain.resolve_category(default_rules(), new.category) == "other"


@pytest.mark.parametrize(
    ("kw", "field"),
    [
        ({"title": "   "}, "title"),
        ({"description": ""}, "description"),
        ({"description": "长" * (DESCRIPTION_MAX + 1)}, "description"),
        ({"title": "t" * 121}, "title"),
        ({"channel": "fax"}, "channel"),
        ({"location": Location()}, "location"),
        ({"location": Location(lat=36.2)}, "location"),
        ({"location": Location(lat=96.0, lon=117.1)}, "location.lat"),
        ({"location": Location(lat=36.0, lon=190.0)}, "location.lon"),
        ({"location": Location(lat=math.nan, lon=117.0)}, "location.lat"),
        ({"location": Location(lat=36.0, lon=math.inf)}, "location.lon"),
        ({"affected_households": -1}, "affected_households"),
    ],
)
def test_each_bad_field_is_named(kw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        issue(**kw)
    assert exc.value.field == field


def test_an_address_alone_cannot_be_placed() -> None:
    with pytest.raises(InvalidArgument, match="give a point \\(lat, lon\\) or a compound id") as exc:
        issue(location=Location(address="嘉德社区3号楼"))
    assert exc.value.field == "location"
    assert issue(location=Location(address="嘉德社区3号楼", compound_id="jiade-x1")).location.compound_id == "jiade-x1"


def test_description_at_the_limit_is_accepted() -> None:
    assert issue(description="长" * DESCRIPTION_MAX)


def test_over_long_message_says_how_long() -> None:
    with pytest.raises(InvalidArgument, match="4001 characters; at most 4000"):
        issue(description="x" * 4001)


def test_idempotency_key_gives_a_stable_id() -> None:
    assert new_issue_id("k1") == new_issue_id("k1") != new_issue_id("k2")
    assert new_issue_id() != new_issue_id()


def test_unknown_category_lists_the_valid_codes() -> None:
    rules = default_rules()
    with pytest.raises(InvalidArgument) as exc:
        domain.resolve_category(rules, "dragons")
    assert exc.value.field == "category"
    assert "property_repair" in exc.value.message and "other" in exc.value.message
    assert domain.resolve_category(rules, " parking ") == "parking"


def test_unknown_hazard_is_named_by_position() -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.check_hazards(default_rules(), ["gas", "volcano"])
    assert exc.value.field == "hazards[1]" and "elevator_trapped" in exc.value.message


def test_assistance_channel_needs_the_departments_grant() -> None:
    assert domain.check_channel("department_assistance", "gr-1", "district_department", "gr-1") == "gr-1"
    with pytest.raises(PermissionDenied):
        domain.check_channel("department_assistance", "gr-1", "community_worker", None)
    with pytest.raises(PermissionDenied):
        domain.check_channel("online", "", "district_department", "gr-1")
    with pytest.raises(InvalidArgument):
        domain.check_channel("online", "gr-1", "resident", None)


# ---------------------------------------------------------------- contact


@pytest.mark.parametrize("phone", ["13812341234", "0538-1234567", "05388123456", "+86 138 1234 1234", "010-12345678"])
def test_valid_phones(phone: str) -> None:
    contact = domain.check_contact("张三", phone)
    assert contact is not None and " " not in contact.phone and not contact.phone.startswith("+")


@pytest.mark.parametrize("phone", ["12345678901", "1381234123", "138123412345", "abc", "5381234567"])
def test_invalid_phones_are_refused(phone: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.check_contact("张三", phone)
    assert exc.value.field == "contact.phone"


def test_no_contact_is_fine_and_masks_hide_the_middle() -> None:
    assert domain.check_contact("", "") is None
    assert domain.mask_name("张三丰") == "张*"
    assert domain.mask_phone("13812341234") == "138****1234"
    assert domain.mask_phone("0538-1234567") == "053*****4567"
    assert domain.mask_name("") == domain.mask_phone("") == ""


# ---------------------------------------------------------------- attachments


@pytest.mark.parametrize(
    ("content", "kind"),
    [(JPEG, "image/jpeg"), (PNG, "image/png"), (WEBP, "image/webp"), (PDF, "application/pdf"), (b"GIF89a..", None)],
)
def test_types_are_told_by_their_bytes(content: bytes, kind: str | None) -> None:
    assert domain.sniff_type(content) == kind


def test_checked_attachments_carry_size_hash_and_a_safe_name() -> None:
    [a, b] = domain.check_attachments(
        [AttachmentIn("../../etc/照片.jpg", "image/jpeg", JPEG), AttachmentIn("", "application/pdf", PDF)]
    )
    assert a.filename == "照片.jpg" and a.size == len(JPEG) and len(a.sha256) == 64
    assert b.filename == "attachment-2.pdf"


@pytest.mark.parametrize(
    ("uploads", "field", "words"),
    [
        (
            [AttachmentIn("a.png", "image/jpeg", PNG)],
            "attachments[0]",
            "declared 'image/jpeg' but its content is image/png",
        ),
        (
            [AttachmentIn("a.jpg", "image/jpeg", JPEG), AttachmentIn("x.exe", "image/png", b"MZ\x90\x00")],
            "attachments[1]",
            "not an accepted",
        ),
        (
            [AttachmentIn("big.jpg", "image/jpeg", JPEG + b"\x00" * ATTACHMENT_MAX_BYTES)],
            "attachments[0]",
            "at most 5242880",
        ),
        ([AttachmentIn("e.jpg", "image/jpeg", b"")], "attachments[0]", "empty"),
        ([AttachmentIn("a.jpg", "image/jpeg", JPEG)] * 6, "attachments", "at most 5 attachments"),
    ],
)
def test_bad_attachments_are_named(uploads: list[AttachmentIn], field: str, words: str) -> None:
    with pytest.raises(InvalidArgument) as exc:
        domain.check_attachments(uploads)
    assert exc.value.field == field and words in exc.value.message


def test_an_attachment_at_the_limit_is_accepted() -> None:
    [a] = domain.check_attachments(
        [AttachmentIn("a.jpg", "image/jpeg", JPEG + b"\x00" * (ATTACHMENT_MAX_BYTES - len(JPEG)))]
    )
    assert a.size == ATTACHMENT_MAX_BYTES


# ---------------------------------------------------------------- reclassification and search


def test_reclassification_needs_a_reason_and_a_change() -> None:
    rules = default_rules()
    rc = domain.check_reclassification(rules, "routine", "sanitation", "urgent", "", "燃气泄漏")
    assert (rc.urgency, rc.category) == ("urgent", "sanitation")
    rc = domain.check_reclassification(rules, "routine", "sanitation", "", "gas_safety", "其实是燃气问题")
    assert (rc.urgency, rc.category) == ("routine", "gas_safety")
    for args, field in [
        (("urgent", "", ""), "reason"),
        (("huge", "", "x"), "urgency"),
        (("", "dragons", "x"), "category"),
        (("routine", "sanitation", "x"), "urgency"),  # nothing changes
    ]:
        with pytest.raises(InvalidArgument) as exc:
            domain.check_reclassification(rules, "routine", "sanitation", *args)
        assert exc.value.field == field


def test_search_filters_are_checked() -> None:
    codes = default_rules().category_codes()
    ok = domain.check_filter(domain.IssueFilter(text="  漏水 ", ids=("a", "a", "")), codes)
    assert ok.text == "漏水" and ok.ids == ("a",)
    t1, t2 = datetime(2025, 1, 2, tzinfo=UTC), datetime(2025, 1, 1, tzinfo=UTC)
    for flt, field in [
        (domain.IssueFilter(status="lost"), "status"),
        (domain.IssueFilter(urgency="meh"), "urgency"),
        (domain.IssueFilter(channel="fax"), "channel"),
        (domain.IssueFilter(category="dragons"), "category"),
        (domain.IssueFilter(created_from=t1, created_to=t2), "created_to"),
        (domain.IssueFilter(text="x" * 101), "text"),
        (domain.IssueFilter(text="a\x00b"), "text"),
        (domain.IssueFilter(ids=tuple(str(i) for i in range(101))), "ids"),
    ]:
        with pytest.raises(InvalidArgument) as exc:
            domain.check_filter(flt, codes)
        assert exc.value.field == field
    assert domain.IssueFilter(status="done").fingerprint() != domain.IssueFilter(status="verified").fingerprint()
