"""What callers read: wallets, statements, leaderboards, the gift feed, and their cursors.

Cursors are opaque to callers (AIP-158) and bound to what they page through, so a token
from one list or one LIVE is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import enum
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from libs.errors import InvalidArgument
from services.gifts.eligibility import AccountFacts
from services.gifts.gifting import SentGift
from services.gifts.ledger import Balance, Entry, Phase, Purpose
from services.gifts.live import LiveSession

T = TypeVar("T")
DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1_000


@dataclass(frozen=True)
class Wallet:
    user_id: str
    balances: dict[Purpose, Balance]
    updated_at_us: int = 0  # the latest entry touching it

    def available(self, purpose: Purpose) -> int:
        balance = self.balances.get(purpose)
        return balance.available if balance else 0

    def reserved(self, purpose: Purpose) -> int:
        balance = self.balances.get(purpose)
        return balance.debits_pending if balance else 0


@dataclass(frozen=True)
class FeedItem:
    """A gift as the LIVE overlay sees it: its place in the session's feed, and the gift."""

    sequence: int
    posted_at_us: int
    gift: SentGift


@dataclass(frozen=True)
class AccountStanding:
    facts: AccountFacts
    updated_at_us: int  # 0 when never set
    updated_by: str


@dataclass(frozen=True)
class LiveSummary:
    session: LiveSession
    gift_count: int  # gifts posted and not reversed
    diamonds_earned: int  # net of reversals


@dataclass(frozen=True)
class StatementLine:
    """One ledger entry touching a wallet, with what it concerns."""

    entry: Entry
    resolution: Phase | None  # how a pending entry was resolved; None while pending or if one-phase
    live_id: str | None
    creator: str | None
    payout_id: str | None


class Party(enum.StrEnum):
    GIFTER = "GIFTER"
    CREATOR = "CREATOR"


@dataclass(frozen=True)
class LeaderboardEntry:
    rank: int  # competition ranking: ties share a rank, the next rank skips
    user_id: str
    amount: int  # coins gifted (gifters) or diamonds earned (creators), net of reversals


def page_size(requested: int, default: int = DEFAULT_PAGE_SIZE) -> int:
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    return min(requested or default, MAX_PAGE_SIZE)


def page_of(items: Sequence[T], *, requested_size: int, page_token: str, scope: str,
            default_size: int = DEFAULT_PAGE_SIZE) -> tuple[list[T], str]:
    """One page of a short list held in memory (the catalog), and the token for the next."""
    offset = decode_int_cursor(page_token, scope) or 0
    limit = page_size(requested_size, default_size)
    following = encode_cursor(scope, offset + limit) if offset + limit < len(items) else ""
    return list(items[offset:offset + limit]), following


def encode_cursor(scope: str, position: int | str) -> str:
    return base64.urlsafe_b64encode(f"v1|{scope}|{position}".encode()).decode().rstrip("=")


def decode_cursor(token: str, scope: str, *, field: str = "page_token") -> str | None:
    """The position in `token`, None for an empty token; InvalidArgument on `field` otherwise."""
    if not token:
        return None
    try:
        version, token_scope, position = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split("|")
        if version == "v1" and token_scope == scope and position:
            return position
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise _bad_cursor(field)


def decode_int_cursor(token: str, scope: str, *, field: str = "page_token") -> int | None:
    position = decode_cursor(token, scope, field=field)
    if position is not None and not position.isdigit():
        raise _bad_cursor(field)
    return None if position is None else int(position)


def _bad_cursor(field: str) -> InvalidArgument:
    return InvalidArgument.for_field(field, "not a cursor issued for this list", reason="INVALID_CURSOR")
