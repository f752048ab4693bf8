"""Gifts' part of a data-subject request: what it holds about a user, and its erasure step.

The ledger is a financial record kept for ten years (§ 257 HGB, § 147 AO): its amounts, dates,
opaque account names and payment references (receipt ids, payout methods and settlement
references, which bookkeeping must be able to trace) stay; the erasure step says so. LIVE titles
are sealed under the host's data key, so they become unreadable when compliance destroys it.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypeVar

from libs.privacy.subject_data import Erasure, RetentionException
from services.gifts.model.live import LiveSession
from services.gifts.model.records import PayoutResult
from services.gifts.model.views import StatementLine, Wallet

PAGE = 500
LEDGER_RETENTION = RetentionException(
    "gifts.ledger", "§ 257 HGB / § 147 AO: financial records (amounts, dates, account and payment references) "
    "are kept for 10 years")

T = TypeVar("T")


class SubjectReads(Protocol):
    """The reader's queries an export needs (store/reads.py satisfies it)."""

    def wallet(self, user_id: str) -> Wallet: ...
    def statement(self, user_id: str, *, before_id: int | None, limit: int) -> list[StatementLine]: ...
    def lives(self, *, host: str | None, before_live_id: str | None, limit: int,
              now: dt.datetime) -> list[LiveSession]: ...
    def payouts(self, user_id: str, *, before_payout_id: str | None, limit: int) -> list[PayoutResult]: ...


def export(reads: SubjectReads, user_id: str, now: dt.datetime) -> dict[str, Any]:
    """Everything gifts holds about `user_id`, as JSON-ready sections; {} when nothing."""
    wallet = reads.wallet(user_id)
    entries = _all(lambda before: reads.statement(user_id, before_id=before, limit=PAGE),
                   lambda line: line.entry.transfer_id)
    lives = _all(lambda before: reads.lives(host=user_id, before_live_id=before, limit=PAGE, now=now),
                 lambda live: live.live_id)
    payouts = _all(lambda before: reads.payouts(user_id, before_payout_id=before, limit=PAGE),
                   lambda payout: payout.payout_id)
    sections: dict[str, Any] = {}
    if wallet.balances:
        sections["wallet"] = {purpose.name: _plain(balance) for purpose, balance in wallet.balances.items()}
    for section, records in (("ledger_entries", entries), ("live_sessions", lives), ("payouts", payouts)):
        if records:
            sections[section] = [_plain(record) for record in records]
    return sections


def erasure() -> Erasure:
    """What gifts' erasure step does (nothing it may delete) and what it keeps, and why."""
    return Erasure("the ledger is kept by law; LIVE titles are sealed under the data key and unreadable once it "
                   "is destroyed", (LEDGER_RETENTION,))


def _all(page: Callable[[Any], list[T]], position: Callable[[T], Any]) -> list[T]:
    found: list[T] = []
    before = None
    while True:
        batch = page(before)
        found += batch
        if len(batch) < PAGE:
            return found
        before = position(batch[-1])


def _plain(value: Any) -> Any:
    """A dataclass, enum or time as JSON-ready data."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, tuple | list):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {str(_plain(key)): _plain(item) for key, item in value.items()}
    return value
