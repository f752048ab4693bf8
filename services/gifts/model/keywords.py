"""Keyword filters for LIVE chat and Q&A: matching that sees through the usual disguises.

A text and a keyword are compared in normal forms, so that one keyword catches the
spellings people use to slip past a filter:

- case (`SPAM`), diacritics (`śpàm`) and compatibility characters (fullwidth letters);
- German: an umlaut matches both its base letter and its e-digraph (`müll` matches `mull`
  and `muell`), and `ß` matches `ss` (`straße`, `strasse`);
- digits and symbols standing for letters (`sp4m`, `$pam`, `5p@m`);
- separators between letters (`s.p.a.m`, `s-p-a-m`, and single letters spaced out: `s p a m`);
- letters repeated (`spaaaam`, `sppam`).

A keyword matches inside a word (`spam` matches `spammer`), never across two words written
apart (`this pam` is not `spam`). Each text is normalised once; matching is then substring
search over a handful of forms. The reference for what counts as a match is
`test_keywords.py`'s cases, kept as data.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass

# Umlauts as the e-digraph German writes without them; the other form drops the dots.
_DIGRAPHS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue"})
# What digits and symbols stand for, read as letters.
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "9": "g",
                       "@": "a", "$": "s", "!": "i", "|": "l", "€": "e", "+": "t"})
_WORD_SEPARATORS = re.compile(r"\s+")
_NOT_ALPHANUMERIC = re.compile(r"[^a-z0-9]+")
_REPEATS = re.compile(r"(.)\1+")
MIN_KEYWORD_LETTERS = 2


def _strip_marks(text: str) -> str:
    return "".join(char for char in unicodedata.normalize("NFKD", text) if not unicodedata.combining(char))


def _words(text: str) -> list[str]:
    """The words of an already case-folded text, each reduced to letters, separators dropped,
    single letters written apart joined back (`s p a m` -> `spam`)."""
    words: list[str] = []
    letters: list[str] = []
    for raw in _WORD_SEPARATORS.split(text):
        word = _NOT_ALPHANUMERIC.sub("", _strip_marks(raw).translate(_LEET))
        if len(word) == 1:
            letters.append(word)
            continue
        if letters:
            words.append("".join(letters))
            letters = []
        if word:
            words.append(word)
    if letters:
        words.append("".join(letters))
    return [_REPEATS.sub(r"\1", word) for word in words]


def normal_forms(text: str) -> frozenset[str]:
    """The words of `text` in every normal form (umlauts dropped, umlauts as digraphs)."""
    folded = unicodedata.normalize("NFKC", text).casefold()  # casefold turns ß into ss
    return frozenset(_words(folded)) | frozenset(_words(folded.translate(_DIGRAPHS)))


def normal_keyword(keyword: str) -> frozenset[str]:
    """A keyword's forms, its words joined; empty when fewer than two letters or digits would
    remain (nothing to match)."""
    folded = unicodedata.normalize("NFKC", keyword).casefold()
    forms = ("".join(_words(variant)) for variant in (folded, folded.translate(_DIGRAPHS)))
    return frozenset(form for form in forms if len(form) >= MIN_KEYWORD_LETTERS)


@dataclass(frozen=True)
class KeywordFilter:
    """The keywords that refuse a message (the platform's and the creator's), normalised once."""

    forms: frozenset[str]

    @classmethod
    def of(cls, *keyword_lists: Iterable[str]) -> KeywordFilter:
        return cls(frozenset(form for keywords in keyword_lists for keyword in keywords
                             for form in normal_keyword(keyword)))

    def first_match(self, text: str) -> str | None:
        """The normal form of a keyword `text` contains, or None."""
        if not self.forms:
            return None
        words = normal_forms(text)
        for form in sorted(self.forms):
            if any(form in word for word in words):
                return form
        return None


def is_usable_keyword(keyword: str) -> bool:
    """True when the keyword keeps at least two letters or digits once normalised."""
    return bool(normal_keyword(keyword))
