"""Keyword matching against the disguises people use, kept as data."""

from __future__ import annotations

import pytest

from services.gifts.model.keywords import KeywordFilter, is_usable_keyword, normal_keyword

KEYWORDS = ("spam", "Scheiße", "müll", "idiot")

MATCHES = [
    # (text, the keyword it matches)
    ("SPAM", "spam"), ("Spam!", "spam"), ("sp4m", "spam"), ("5p@m", "spam"), ("$pam", "spam"),
    ("s.p.a.m", "spam"), ("s-p-a-m", "spam"), ("s p a m", "spam"), ("spaaaaam", "spam"), ("sppaamm", "spam"),
    ("śpàm", "spam"), ("ＳＰＡＭ", "spam"), ("spammer", "spam"),
    ("Scheiße", "Scheiße"), ("SCHEISSE", "Scheiße"), ("scheisse", "Scheiße"), ("sch3iße", "Scheiße"),
    ("müll", "müll"), ("Muell", "müll"), ("mull", "müll"), ("MÜÜÜLL", "müll"),
    ("1d10t", "idiot"), ("i d i o t", "idiot"),
]
CLEAN = ["this pam is fine", "hello", "Spaß", "schade", "the spa meeting", ""]


@pytest.mark.parametrize(("text", "keyword"), MATCHES)
def test_a_disguised_keyword_is_caught(text: str, keyword: str) -> None:
    assert KeywordFilter.of(KEYWORDS).first_match(text) in normal_keyword(keyword)


@pytest.mark.parametrize("text", CLEAN)
def test_words_apart_and_lookalikes_pass(text: str) -> None:
    assert KeywordFilter.of(KEYWORDS).first_match(text) is None


def test_a_keyword_must_keep_two_letters() -> None:
    assert not is_usable_keyword("x") and not is_usable_keyword("!!") and is_usable_keyword("ab")
    assert KeywordFilter.of(()).first_match("anything") is None
