"""Classification (日常 / 重大 / 紧急): a tenant's rules and the pure function that applies them.

An issue's class is the highest of its category's default, each hazard flag it carries, the affected
households thresholds, and every keyword found in its title or description (a category's own keywords
raise it to that category's default). The result comes with its reasons, one bilingual line each.
Plain Python: no storage, no gRPC.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from services.common.errors import InvalidArgument

DEFAULTS_FILE = Path(__file__).with_name("data") / "categories.toml"
URGENCIES = ("routine", "major", "urgent")
URGENCY_ZH = {"routine": "日常", "major": "重大", "urgent": "紧急"}
LEVEL = {u: i for i, u in enumerate(URGENCIES)}
CODE_RE = re.compile(r"^[a-z][a-z0-9_]{1,39}$")
MAX_CATEGORIES = 200
MAX_HAZARDS = 50
MAX_KEYWORDS = 500
MAX_CATEGORY_KEYWORDS = 30
KEYWORD_MAX = 20
HOUSEHOLDS_MAX = 1_000_000
DISTANCE_RANGE = (10, 5000)  # metres
WINDOW_RANGE = (1, 720)  # hours (30 days)

# Filing (核实立案): does a report go straight to dispatch ("direct") or wait for a community worker to
# accept it ("verify") within a deadline? See filing_for.
FILING_DIRECT = "direct"
FILING_VERIFY = "verify"
FILING_MODES = (FILING_DIRECT, FILING_VERIFY)
MAX_FILING_RULES = 200
FILING_MINUTES_RANGE = (1, 43200)  # a verification deadline: 1 minute .. 30 days
# The shipped filing of every class, until a tenant's rules say otherwise: straight to dispatch, as before
# verification existed (README "核实立案": an upgrade must not hold every tenant's reports for workers who
# may not be on duty yet; a subdistrict admin turns verification on per class or category).
# Without a rule of the tenant: urgent goes straight to dispatch, routine and major wait for a worker's
# verification (核实立案) — the default. A deployment may ship "direct" for every class instead
# (HONGLING_FILING_DEFAULT=direct: an upgrade whose communities are not yet taking the queue).
DEFAULT_FILING = {"routine": FILING_VERIFY, "major": FILING_VERIFY, "urgent": FILING_DIRECT}
ALL_DIRECT = {"routine": FILING_DIRECT, "major": FILING_DIRECT, "urgent": FILING_DIRECT}
FILING_DEFAULTS = {"verify": DEFAULT_FILING, "direct": ALL_DIRECT}
# A "verify" rule without its own deadline waits this long (minutes) for a worker's decision: 4 h for
# routine, 24 h for major (it needs a visit more often), 1 h for urgent (should a tenant verify those at all).
DEFAULT_VERIFY_MINUTES = {"routine": 4 * 60, "major": 24 * 60, "urgent": 60}


@dataclass(frozen=True)
class Category:
    code: str
    name_zh: str
    name_en: str = ""
    group: str = ""
    default_urgency: str = "routine"
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True)
class HazardRule:
    code: str
    name_zh: str
    urgency: str


@dataclass(frozen=True)
class KeywordRule:
    keyword: str
    urgency: str


@dataclass(frozen=True)
class FilingRule:
    """How reports of a category and/or class are filed: "" matches any. The most specific rule wins
    (category and urgency, then category, then urgency, then one naming neither), then DEFAULT_FILING."""

    mode: str
    category: str = ""
    urgency: str = ""
    deadline_minutes: int = 0  # verify: 0 = DEFAULT_VERIFY_MINUTES of the class


@dataclass(frozen=True)
class Filing:
    """The filing an issue gets: its mode, the minutes a worker has to decide (verify), and why (bilingual)."""

    mode: str
    deadline_minutes: int
    reason: str


@dataclass(frozen=True)
class Rules:
    categories: tuple[Category, ...]
    hazards: tuple[HazardRule, ...]
    keywords: tuple[KeywordRule, ...]
    major_households: int
    urgent_households: int
    duplicate_distance_m: int
    duplicate_window_hours: int
    catch_all_category: str
    version: int = 0
    filing: tuple[FilingRule, ...] = ()
    _by_code: dict[str, Category] = field(default_factory=dict, init=False, compare=False, repr=False)
    _hazards: dict[str, HazardRule] = field(default_factory=dict, init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        self._by_code.update({c.code: c for c in self.categories})
        self._hazards.update({h.code: h for h in self.hazards})

    def category(self, code: str) -> Category | None:
        return self._by_code.get(code)

    def hazard(self, code: str) -> HazardRule | None:
        return self._hazards.get(code)

    def category_codes(self) -> list[str]:
        return [c.code for c in self.categories]

    def to_dict(self) -> dict[str, Any]:
        """The rules as stored (plain types; the version is kept beside them, not inside)."""
        return {
            "categories": [asdict(c) | {"keywords": list(c.keywords)} for c in self.categories],
            "hazards": [asdict(h) for h in self.hazards],
            "keywords": [asdict(k) for k in self.keywords],
            "major_households": self.major_households,
            "urgent_households": self.urgent_households,
            "duplicate_distance_m": self.duplicate_distance_m,
            "duplicate_window_hours": self.duplicate_window_hours,
            "catch_all_category": self.catch_all_category,
            "filing": [asdict(f) for f in self.filing],
        }


def _urgency(value: object, where: str) -> str:
    if value not in URGENCIES:
        raise InvalidArgument(f"{where} must be one of {', '.join(URGENCIES)} (got {value!r})", field=where)
    return str(value)


def _text(value: object, where: str, limit: int, *, required: bool = True) -> str:
    text = str(value or "").strip()
    if required and not text:
        raise InvalidArgument(f"{where} is required (必填)", field=where)
    if len(text) > limit:
        raise InvalidArgument(f"{where} is longer than {limit} characters", field=where)
    return text


def _code(value: object, where: str) -> str:
    code = str(value or "").strip()
    if not CODE_RE.match(code):
        raise InvalidArgument(
            f"{where} {code!r} must be 2-40 lower-case letters, digits or '_', starting with a letter", field=where
        )
    return code


def _int(value: object, where: str, low: int, high: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidArgument(f"{where} must be a whole number {low}..{high} (got {value!r})", field=where)
    return value


def rules_from_dict(data: Mapping[str, Any], version: int = 0) -> Rules:
    """Checked rules, or InvalidArgument naming the first bad field (as PutClassificationRules reports it)."""
    raw_categories = list(data.get("categories") or [])
    if not raw_categories:
        raise InvalidArgument("categories: give at least one category", field="categories")
    if len(raw_categories) > MAX_CATEGORIES:
        raise InvalidArgument(f"categories: at most {MAX_CATEGORIES}", field="categories")
    categories: list[Category] = []
    seen: set[str] = set()
    for i, c in enumerate(raw_categories):
        where = f"categories[{i}]"
        code = _code(c.get("code"), f"{where}.code")
        if code in seen:
            raise InvalidArgument(f"{where}.code {code!r} is listed twice (编码重复)", field=f"{where}.code")
        seen.add(code)
        raw_keywords = list(c.get("keywords") or [])
        if len(raw_keywords) > MAX_CATEGORY_KEYWORDS:
            raise InvalidArgument(f"{where}.keywords: at most {MAX_CATEGORY_KEYWORDS}", field=f"{where}.keywords")
        keywords = tuple(
            dict.fromkeys(_text(k, f"{where}.keywords[{j}]", KEYWORD_MAX) for j, k in enumerate(raw_keywords))
        )
        categories.append(
            Category(
                code=code,
                name_zh=_text(c.get("name_zh"), f"{where}.name_zh", 30),
                name_en=_text(c.get("name_en"), f"{where}.name_en", 60, required=False),
                group=_text(c.get("group"), f"{where}.group", 40, required=False),
                default_urgency=_urgency(c.get("default_urgency"), f"{where}.default_urgency"),
                keywords=keywords,
            )
        )
    raw_hazards = list(data.get("hazards") or [])
    if len(raw_hazards) > MAX_HAZARDS:
        raise InvalidArgument(f"hazards: at most {MAX_HAZARDS}", field="hazards")
    hazards: list[HazardRule] = []
    seen = set()
    for i, h in enumerate(raw_hazards):
        where = f"hazards[{i}]"
        code = _code(h.get("code"), f"{where}.code")
        if code in seen:
            raise InvalidArgument(f"{where}.code {code!r} is listed twice (编码重复)", field=f"{where}.code")
        seen.add(code)
        hazards.append(
            HazardRule(
                code, _text(h.get("name_zh"), f"{where}.name_zh", 30), _urgency(h.get("urgency"), f"{where}.urgency")
            )
        )
    raw_keywords = list(data.get("keywords") or [])
    if len(raw_keywords) > MAX_KEYWORDS:
        raise InvalidArgument(f"keywords: at most {MAX_KEYWORDS}", field="keywords")
    keyword_rules: list[KeywordRule] = []
    seen = set()
    for i, k in enumerate(raw_keywords):
        where = f"keywords[{i}]"
        word = _text(k.get("keyword"), f"{where}.keyword", KEYWORD_MAX)
        if word in seen:
            raise InvalidArgument(f"{where}.keyword {word!r} is listed twice", field=f"{where}.keyword")
        seen.add(word)
        keyword_rules.append(KeywordRule(word, _urgency(k.get("urgency"), f"{where}.urgency")))
    major = _int(data.get("major_households"), "major_households", 1, HOUSEHOLDS_MAX)
    urgent = _int(data.get("urgent_households"), "urgent_households", 1, HOUSEHOLDS_MAX)
    if urgent < major:
        raise InvalidArgument(
            f"urgent_households ({urgent}) must be at least major_households ({major})", field="urgent_households"
        )
    catch_all = str(data.get("catch_all_category") or "").strip()
    if catch_all not in {c.code for c in categories}:
        raise InvalidArgument(
            f"catch_all_category {catch_all!r} must be one of the categories' codes", field="catch_all_category"
        )
    filing = _filing_rules(data.get("filing"), {c.code for c in categories})
    return Rules(
        filing=filing,
        categories=tuple(categories),
        hazards=tuple(hazards),
        keywords=tuple(keyword_rules),
        major_households=major,
        urgent_households=urgent,
        duplicate_distance_m=_int(data.get("duplicate_distance_m"), "duplicate_distance_m", *DISTANCE_RANGE),
        duplicate_window_hours=_int(data.get("duplicate_window_hours"), "duplicate_window_hours", *WINDOW_RANGE),
        catch_all_category=catch_all,
        version=version,
    )


def _filing_rules(raw: object, codes: set[str]) -> tuple[FilingRule, ...]:
    """Checked filing rules (absent or empty: the defaults alone), or InvalidArgument naming the bad field."""
    items = list(raw or [])  # type: ignore[call-overload]
    if len(items) > MAX_FILING_RULES:
        raise InvalidArgument(f"filing: at most {MAX_FILING_RULES} rules", field="filing")
    out: list[FilingRule] = []
    seen: set[tuple[str, str]] = set()
    for i, f in enumerate(items):
        where = f"filing[{i}]"
        if not isinstance(f, Mapping):
            raise InvalidArgument(
                f"{where} must be an object with mode, category, urgency, deadline_minutes", field=where
            )
        mode = str(f.get("mode") or "").strip()
        if mode not in FILING_MODES:
            raise InvalidArgument(
                f"{where}.mode must be direct (straight to dispatch) or verify (wait for a worker) "
                f"(got {mode!r}) (立案方式只能是 direct 或 verify)",
                field=f"{where}.mode",
            )
        category = str(f.get("category") or "").strip()
        if category and category not in codes:
            raise InvalidArgument(
                f'{where}.category {category!r} is not one of the categories\' codes ("" for any)',
                field=f"{where}.category",
            )
        urgency = str(f.get("urgency") or "").strip()
        if urgency:
            _urgency(urgency, f"{where}.urgency")
        minutes = f.get("deadline_minutes") or 0
        if mode == FILING_VERIFY and minutes:
            minutes = _int(minutes, f"{where}.deadline_minutes", *FILING_MINUTES_RANGE)
        elif minutes:
            raise InvalidArgument(
                f"{where}.deadline_minutes belongs to verify rules only (直接派单无需核实时限)",
                field=f"{where}.deadline_minutes",
            )
        if (category, urgency) in seen:
            raise InvalidArgument(
                f"{where}: a rule for category {category or '(any)'} and urgency {urgency or '(any)'} is listed "
                "twice (规则重复)",
                field=where,
            )
        seen.add((category, urgency))
        out.append(FilingRule(mode=mode, category=category, urgency=urgency, deadline_minutes=int(minutes)))
    return tuple(out)


def filing_for(rules: Rules, category: str, urgency: str, default: str = "verify") -> Filing:
    """How an issue of this category and class is filed: the most specific of the tenant's filing rules
    (category and urgency, then category alone, then urgency alone, then a rule naming neither), else the
    deployment's default (FILING_DEFAULTS[default]: "verify" = DEFAULT_FILING); a verify deadline defaults to
    DEFAULT_VERIFY_MINUTES of the class."""
    best: tuple[int, FilingRule] | None = None
    for rule in rules.filing:
        if rule.category and rule.category != category:
            continue
        if rule.urgency and rule.urgency != urgency:
            continue
        score = (2 if rule.category else 0) + (1 if rule.urgency else 0)
        if best is None or score > best[0]:
            best = (score, rule)
    u_zh = URGENCY_ZH.get(urgency, urgency)
    if best is None:
        mode, minutes = FILING_DEFAULTS[default].get(urgency, FILING_DIRECT), 0
        zh_why, en_why = f"默认（{u_zh}事项）", f"default for {urgency}"
    else:
        rule = best[1]
        mode, minutes = rule.mode, rule.deadline_minutes
        named = [x for x in (rule.category, rule.urgency) if x]
        zh_why = "规则（" + ("、".join(named) or "全部") + "）"
        en_why = "rule for " + (" + ".join(named) or "every issue")
    if mode == FILING_DIRECT:
        return Filing(FILING_DIRECT, 0, _line(f"{zh_why}：直接派单", f"{en_why}: straight to dispatch"))
    minutes = minutes or DEFAULT_VERIFY_MINUTES.get(urgency, 240)
    span_zh = f"{minutes // 60} 小时" if minutes % 60 == 0 else f"{minutes} 分钟"
    span_en = f"{minutes // 60} h" if minutes % 60 == 0 else f"{minutes} min"
    return Filing(
        FILING_VERIFY,
        minutes,
        _line(
            f"{zh_why}：待社区核实立案，时限 {span_zh}", f"{en_why}: awaits a worker's verification within {span_en}"
        ),
    )


@cache
def default_rules() -> Rules:
    """The shipped catalogue (data/categories.toml), version 0: what a tenant has until it stores its own."""
    raw = tomllib.loads(DEFAULTS_FILE.read_text(encoding="utf-8"))
    return rules_from_dict(
        {
            "categories": raw.get("category", []),
            "hazards": raw.get("hazard", []),
            "keywords": raw.get("keyword", []),
            **{k: v for k, v in raw.items() if not isinstance(v, list)},
        }
    )


def _line(zh: str, en: str) -> str:
    return f"{zh} ({en})"


def suggest_category(rules: Rules, title: str, description: str) -> tuple[str, list[str]]:
    """(category, reasons) for a report filed without a category: the category whose keywords (the tenant's,
    editable with its rules) the title and description hold the most of — ties to the longer words found,
    then to the catalogue's order — or the catch-all when none is found. Without it "the most frequent
    categories" would mostly say 其他 (e.g. 楼道灯不亮 → property_repair, not other)."""
    text = f"{title}\n{description}"
    best: tuple[int, int] = (0, 0)
    chosen: Category | None = None
    found: list[str] = []
    for cat in rules.categories:
        if cat.code == rules.catch_all_category:
            continue
        words = [w for w in cat.keywords if w in text]
        score = (len(words), sum(len(w) for w in words))
        if words and score > best:
            best, chosen, found = score, cat, words
    if chosen is None:
        other = rules.category(rules.catch_all_category)
        name = other.name_zh if other else rules.catch_all_category
        return rules.catch_all_category, [
            _line(f"未含任何类别关键词，归入「{name}」", f"no category keyword found: {rules.catch_all_category}")
        ]
    words_zh = "、".join(f"「{w}」" for w in found)
    words_en = ", ".join(f"「{w}」" for w in found)
    return chosen.code, [
        _line(f"类别建议：含关键词{words_zh} → {chosen.name_zh}", f"suggested by keyword {words_en}: {chosen.code}")
    ]


def classify(
    rules: Rules, category: str, hazards: Sequence[str], households: int, title: str, description: str
) -> tuple[str, list[str]]:
    """(urgency, reasons): the highest level any rule gives, and one bilingual line per rule that applied.

    The category and hazards must be ones the rules know (the caller validated them)."""
    reasons: list[str] = []
    level = 0

    def raise_to(urgency: str, zh: str, en: str) -> None:
        nonlocal level
        level = max(level, LEVEL[urgency])
        reasons.append(_line(zh, en))

    cat = rules.category(category)
    if cat is not None:
        u = cat.default_urgency
        raise_to(u, f"类别「{cat.name_zh}」默认：{URGENCY_ZH[u]}", f"category {cat.code} default: {u}")
    for code in dict.fromkeys(hazards):
        rule = rules.hazard(code)
        if rule is not None:
            u = rule.urgency
            raise_to(u, f"隐患：{rule.name_zh} → {URGENCY_ZH[u]}", f"hazard {rule.code} → {u}")
    if households >= rules.urgent_households:
        raise_to(
            "urgent",
            f"受影响 {households} 户 ≥ {rules.urgent_households} 户 → 紧急",
            f"{households} affected households ≥ {rules.urgent_households} → urgent",
        )
    elif households >= rules.major_households:
        raise_to(
            "major",
            f"受影响 {households} 户 ≥ {rules.major_households} 户 → 重大",
            f"{households} affected households ≥ {rules.major_households} → major",
        )
    text = f"{title}\n{description}"
    for kw in rules.keywords:
        if kw.keyword in text:
            u = kw.urgency
            raise_to(u, f"关键词「{kw.keyword}」→ {URGENCY_ZH[u]}", f"keyword 「{kw.keyword}」 → {u}")
    for other in rules.categories:
        if other.code == category or other.default_urgency == "routine":
            continue  # its default is counted above, or could raise nothing
        for word in other.keywords:
            if word in text:
                u = other.default_urgency
                raise_to(
                    u,
                    f"关键词「{word}」（{other.name_zh}）→ {URGENCY_ZH[u]}",
                    f"keyword 「{word}」 suggests {other.code} → {u}",
                )
                break  # one line per category is enough
    return URGENCIES[level], reasons
