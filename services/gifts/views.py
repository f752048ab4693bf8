"""What callers read: wallets, statements, leaderboards, the gift feed, and their cursors.

Cursors are opaque to callers (AIP-158) and bound to what they page through, so a token
from one list or one LIVE is refused by another.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass

from libs.errors import InvalidArgument
from services.gifts.ledger import Balance, Purpose

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1_000


@dataclass(frozen=True)
class Wallet:
    user_id: str
    balances: dict[Purpose, Balance]

    def available(self, purpose: Purpose) -> int:
        balance = self.balances.get(purpose)
        return balance.available if balance else 0

    def reserved(self, purpose: Purpose) -> int:
        balance = self.balances.get(purpose)
        return balance.debits_pending if balance else 0


@dataclass(frozen=True)
class FeedItem:
    sequence: int
    live_id: str
    gift_id: str
    sender: str
    catalog_gift: str
    count: int
    coins: int
    diamonds: int
    posted_at_us: int


class Party(enum.StrEnum):
    GIFTER = "GIFTER"
    CREATOR = "CREATOR"


@dataclass(frozen=True)
class LeaderboardEntry:
    rank: int
    user_id: str
    coins: int  # net of reversals


def page_size(requested: int) -> int:
    if requested < 0:
        raise InvalidArgument.for_field("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_cursor(scope: str, position: int) -> str:
    return base64.urlsafe_b64encode(f"v1|{scope}|{position}".encode()).decode().rstrip("=")


def decode_cursor(token: str, scope: str, *, field: str) -> int | None:
    """The position in `token`, None for an empty token; InvalidArgument on `field` otherwise."""
    if not token:
        return None
    try:
        version, token_scope, position = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)).decode().split("|")
        if version == "v1" and token_scope == scope and position.isdigit():
            return int(position)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise InvalidArgument.for_field(field, "not a cursor issued for this list", reason="INVALID_CURSOR")
