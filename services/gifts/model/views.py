"""What callers read: wallets, statements, leaderboards, the gift feed."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from services.gifts.model.eligibility import AccountFacts
from services.gifts.model.ledger import Balance, Entry, Phase, Purpose
from services.gifts.model.live import LiveSession
from services.gifts.model.records import SentGift


@dataclass(frozen=True)
class Wallet:
    user_id: str
    balances: dict[Purpose, Balance]
    updated_at: dt.datetime | None = None  # the latest entry touching it

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
    posted_at: dt.datetime
    gift: SentGift


@dataclass(frozen=True)
class AccountStanding:
    facts: AccountFacts
    updated_at: dt.datetime | None  # None when never set
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
