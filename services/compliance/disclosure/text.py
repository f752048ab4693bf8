"""Reading a caption as a viewer does: normalised words, hashtags, mentions and links, in order.

Normalisation makes spelling variants one word: Unicode NFKC (full-width and "bold" letters
become plain ones), case folding, German umlauts and ß spelled out (ä -> ae, ß -> ss) and other
accents dropped. Brackets, separators and emoji are not words, so "[WERBUNG]", "Werbung |",
"*Anzeige*" and "#werbung" all read as the word `werbung`; a word spelled out letter by letter
("W E R B U N G") is joined back. Phrases are matched on these words, so the rule set's data
can be written as people write.
"""

from __future__ import annotations

import enum
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_UMLAUTS = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss"})

_TOKEN = re.compile(
    r"(?P<url>(?:https?://|www\.)\S+|\b(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,}/\S*"
    r"|\b(?:[A-Za-z0-9-]+\.)+(?:to|ly|me|it|us|io|co|app)\b)"
    r"|(?P<mention>@[\w.]*\w)"
    r"|(?P<hashtag>#\w+)"
    r"|(?P<word>\w+)"
)
_SPELLED_OUT_MINIMUM = 3


def normalise(text: str) -> str:
    if text.isascii():  # most words: nothing to fold but the case
        return text.lower()
    folded = unicodedata.normalize("NFKC", text).casefold().translate(_UMLAUTS)
    decomposed = unicodedata.normalize("NFD", folded)
    return unicodedata.normalize("NFC", "".join(c for c in decomposed if not unicodedata.combining(c)))


def phrase_words(phrase: str) -> tuple[str, ...]:
    """A lexicon phrase as the words `tokenise` produces for it."""
    return tuple(token.word for token in tokenise(phrase))


class TokenKind(enum.StrEnum):
    WORD = "word"
    HASHTAG = "hashtag"
    MENTION = "mention"
    URL = "url"


@dataclass(frozen=True)
class Token:
    word: str
    """Normalised: no `#` or `@`, lower case, umlauts spelled out; a URL keeps its full text."""
    raw: str
    """As written (after NFKC), for evidence and for telling a code (`ADA20`) from a word."""
    kind: TokenKind
    offset: int
    """Characters from the start of the caption; tags from the hashtags field come after it."""
    from_hashtag_field: bool = False
    hashtag_run: int = 0
    """For a hashtag: how many hashtags stand in the unbroken run it belongs to."""


def tokenise(text: str, *, offset: int = 0, from_hashtag_field: bool = False) -> list[Token]:
    nfkc = unicodedata.normalize("NFKC", text)
    tokens: list[Token] = []
    for match in _TOKEN.finditer(nfkc):
        kind = TokenKind(match.lastgroup or "word")
        raw = match.group()
        if kind is TokenKind.HASHTAG:
            # "#werbung_anzeige" holds two words; an underscore is a separator like a space.
            for part in filter(None, raw[1:].split("_")):
                tokens.append(Token(normalise(part), part, kind, offset + match.start(), from_hashtag_field))
            continue
        if kind is TokenKind.URL:
            raw = raw.rstrip(".,;:!?)")
        word = raw.lower() if kind is TokenKind.URL else normalise(raw.lstrip("@"))
        tokens.append(Token(word, raw, kind, offset + match.start(), from_hashtag_field))
    return _count_hashtag_runs(_join_spelled_out(tokens))


def read_content(caption: str, hashtags: Iterable[str]) -> list[Token]:
    """The caption's tokens, then the hashtags field's, as the viewer sees them."""
    tokens = tokenise(caption)
    after = len(caption) + 1
    for tag in hashtags:
        tokens += tokenise("#" + tag.lstrip("#"), offset=after, from_hashtag_field=True)
        after += len(tag) + 2
    return _count_hashtag_runs(tokens)


def _join_spelled_out(tokens: list[Token]) -> list[Token]:
    joined: list[Token] = []
    run: list[Token] = []

    def flush() -> None:
        if len(run) >= _SPELLED_OUT_MINIMUM:
            first = run[0]
            joined.append(Token("".join(t.word for t in run), " ".join(t.raw for t in run), TokenKind.WORD,
                                first.offset, first.from_hashtag_field))
        else:
            joined.extend(run)
        run.clear()

    for token in tokens:
        if token.kind is TokenKind.WORD and len(token.word) == 1 and token.word.isalpha():
            run.append(token)
            continue
        flush()
        joined.append(token)
    flush()
    return joined


def _count_hashtag_runs(tokens: list[Token]) -> list[Token]:
    counted: list[Token] = []
    index = 0
    while index < len(tokens):
        if tokens[index].kind is not TokenKind.HASHTAG:
            counted.append(tokens[index])
            index += 1
            continue
        end = index
        while end < len(tokens) and tokens[end].kind is TokenKind.HASHTAG:
            end += 1
        counted += [_with_run(token, end - index) for token in tokens[index:end]]
        index = end
    return counted


def _with_run(token: Token, run: int) -> Token:
    return Token(token.word, token.raw, token.kind, token.offset, token.from_hashtag_field, run)


class PhraseBook:
    """Finds the longest lexicon phrase starting at each token.

    A hashtag also matches a phrase written together (`#inkooperationmit`,
    `#paidpartnership`), because hashtags cannot hold spaces.
    """

    def __init__(self, phrases: Iterable[str]) -> None:
        self._by_first: dict[str, list[tuple[str, ...]]] = {}
        self._compact: dict[str, tuple[str, ...]] = {}
        for phrase in phrases:
            words = phrase_words(phrase)
            if not words:
                continue
            self._by_first.setdefault(words[0], []).append(words)
            self._compact.setdefault("".join(words), words)
        for candidates in self._by_first.values():
            candidates.sort(key=len, reverse=True)

    def match_at(self, tokens: Sequence[Token], index: int) -> int:
        """How many tokens the longest phrase starting at `index` spans; 0 when none does."""
        token = tokens[index]
        best = 0
        for words in self._by_first.get(token.word, ()):
            if tuple(t.word for t in tokens[index:index + len(words)]) == words:
                best = len(words)
                break
        if token.kind is TokenKind.HASHTAG and token.word in self._compact:
            best = max(best, 1)
        return best

    @property
    def openings(self) -> frozenset[str]:
        """Every word a match can start with, so a caller can skip tokens none can start at."""
        return frozenset(self._by_first) | frozenset(self._compact)

    def find(self, tokens: Sequence[Token]) -> list[tuple[int, int]]:
        """Every (start, length) match, left to right, not overlapping."""
        found: list[tuple[int, int]] = []
        index = 0
        while index < len(tokens):
            word = tokens[index].word
            if word not in self._by_first and word not in self._compact:
                index += 1
                continue
            length = self.match_at(tokens, index)
            if length:
                found.append((index, length))
                index += length
            else:
                index += 1
        return found


def evidence(tokens: Sequence[Token], start: int, length: int) -> str:
    return " ".join(token.raw if token.kind is not TokenKind.HASHTAG else "#" + token.raw
                    for token in tokens[start:start + length])
