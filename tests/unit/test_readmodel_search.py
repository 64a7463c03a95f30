"""Chinese text search on the issue read model: what a row carries and what a query asks of it."""

from __future__ import annotations

from services.intake.readmodel import grams, normalize, query_grams


def contains(row_text: str, query: str) -> bool:
    """What the index promises: every gram the query asks for is among the row's."""
    return set(query_grams(query)) <= set(grams(row_text))


def test_two_character_words_are_found_inside_a_sentence() -> None:
    text = "3号楼2单元楼道灯坏了一周，晚上漏水严重"
    for word in ("漏水", "楼道灯", "单元", "一周"):
        assert contains(text, word), word
    assert not contains(text, "停电")


def test_one_character_and_latin_queries() -> None:
    assert contains("路面坑洼", "坑")
    assert not contains("路面坑洼", "桥")
    assert contains("Broken LIGHT on street", "light")  # case-insensitive
    assert contains("ＡＢＣ全角", "abc")  # full-width folded (NFKC)


def test_pairs_never_span_white_space_so_a_spaced_query_still_matches() -> None:
    assert "a b" not in grams("a b")
    assert contains("检查1号 AB12CD", "ab12cd")
    assert query_grams("树 枝") == ["枝", "树"]


def test_normalize_is_what_the_confirming_substring_match_uses() -> None:
    assert normalize("ＬＩＧＨＴ") == "light"
