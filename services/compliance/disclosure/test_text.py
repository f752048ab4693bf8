"""Reading captions: normalisation and tokens, the ground the rules stand on."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.compliance.disclosure.text import PhraseBook, TokenKind, normalise, read_content, tokenise


@pytest.mark.parametrize(("written", "read"), [
    ("WERBUNG", "werbung"), ("Größe", "groesse"), ("STRAẞE", "strasse"), ("Publicité", "publicite"),
    ("𝐖𝐞𝐫𝐛𝐮𝐧𝐠", "werbung"), ("Ｗｅｒｂｕｎｇ", "werbung"), ("Übersee", "uebersee"),
])
def test_spelling_variants_read_as_one_word(written: str, read: str) -> None:
    assert normalise(written) == read


def test_brackets_separators_and_emoji_are_not_words() -> None:
    assert [t.word for t in tokenise("📢 [Werbung] | *Anzeige* – Werbung/Anzeige")] == [
        "werbung", "anzeige", "werbung", "anzeige"]


def test_hashtags_mentions_and_links_keep_their_kind_and_a_spelled_out_word_is_joined() -> None:
    tokens = tokenise("W E R B U N G @Glow.Lab #Werbung_Anzeige amzn.to/3xYz!")
    assert [(t.word, t.kind) for t in tokens] == [
        ("werbung", TokenKind.WORD), ("glow.lab", TokenKind.MENTION), ("werbung", TokenKind.HASHTAG),
        ("anzeige", TokenKind.HASHTAG), ("amzn.to/3xyz", TokenKind.URL)]
    assert tokens[-1].raw == "amzn.to/3xYz"


def test_the_hashtags_field_comes_after_the_caption_as_one_run() -> None:
    tokens = read_content("Look #ootd", ["werbung", "fashion"])
    assert [(t.word, t.from_hashtag_field, t.hashtag_run) for t in tokens] == [
        ("look", False, 0), ("ootd", False, 3), ("werbung", True, 3), ("fashion", True, 3)]


def test_phrases_match_longest_first_and_hashtags_match_written_together() -> None:
    book = PhraseBook(["sponsored", "sponsored by", "in Kooperation mit"])
    tokens = tokenise("Sponsored by X, #InKooperationMit Y, sponsored")
    assert book.find(tokens) == [(0, 2), (3, 1), (5, 1)]


@given(st.text(max_size=200))
def test_reading_never_fails_and_normalising_is_idempotent(text: str) -> None:
    for token in tokenise(text):
        assert normalise(token.word) == token.word or token.kind is TokenKind.URL
