"""Rows to domain values and back: the one place that knows both the columns and the dataclasses."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any, Protocol

from libs.storage.database import Cursor, Parameters, Row
from libs.timestamps import epoch_us, from_epoch_us
from services.gifts.model.eligibility import AccountFacts
from services.gifts.model.ledger import Balance, Code, Currency, Entry, Phase
from services.gifts.model.live import LiveSession
from services.gifts.model.records import Payout, PayoutSettlement, SentGift

ENTRY_COLUMNS = ", ".join(f"transfer.{column}" for column in (
    "id", "request_id", "code", "phase", "debit_account", "credit_account", "currency", "amount", "created_at_us",
    "pending_id", "timeout_us", "gift_id"))


_MOMENT = "$time_us"  # how a result's datetime is stored: {"$time_us": microseconds since the epoch}


def epoch_us_or_none(moment: dt.datetime | None) -> int | None:
    return None if moment is None else epoch_us(moment)


def from_epoch_us_or_none(value: int | None) -> dt.datetime | None:
    return None if value is None else from_epoch_us(value)


def result_to_json(result: dict[str, Any]) -> str:
    """A use case's result as stored with its request id; moments as tagged integers."""
    return json.dumps(result, sort_keys=True, separators=(",", ":"),
                      default=lambda value: {_MOMENT: epoch_us(value)} if isinstance(value, dt.datetime) else value)


def result_from_json(text: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(
        text, object_hook=lambda fields: from_epoch_us(fields[_MOMENT]) if fields.keys() == {_MOMENT} else fields)
    return decoded


def entry_of(row: Row) -> Entry:
    return Entry(row["id"], row["request_id"], Code(row["code"]), Phase(row["phase"]), row["debit_account"],
                 row["credit_account"], Currency(row["currency"]), row["amount"], from_epoch_us(row["created_at_us"]),
                 row["pending_id"], from_epoch_us_or_none(row["timeout_us"]), row["gift_id"])


def balance_of(row: Row) -> Balance:
    return Balance(row["name"], Currency(row["currency"]), row["debits_posted"], row["credits_posted"],
                   row["debits_pending"], row["credits_pending"])


def live_of(row: Row) -> LiveSession:
    return LiveSession(row["live_id"], row["host"], row["title"], from_epoch_us(row["started_at_us"]),
                       from_epoch_us(row["deadline_us"]), row["gifts_barred_reason"], from_epoch_us_or_none(row["ended_at_us"]),
                       row["end_reason"])


def gift_of(row: Row) -> SentGift:
    return SentGift(row["gift_id"], row["request_id"], row["live_id"], row["sender"], row["creator"],
                    row["catalog_gift"], row["count"], row["coins"], row["fee_coins"], row["diamonds"],
                    from_epoch_us(row["sent_at_us"]), row["hold_reasons"])


def facts_of(user_id: str, row: Row | None) -> AccountFacts:
    if row is None:
        return AccountFacts(user_id)
    return AccountFacts(user_id, row["follower_count"], bool(row["good_standing"]), row["restriction_reason"],
                        row["category"], bool(row["identity_verified"]),
                        from_epoch_us_or_none(row["joined_at_us"]))


def to_json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class Executor(Protocol):
    """A write transaction or a read snapshot: both run the shared lookups below."""

    def execute(self, sql: str, parameters: Parameters = ...) -> Cursor: ...


def payout_of(row: Row) -> Payout:
    return Payout(row["payout_id"], row["request_id"], row["user_id"], row["eur_cents"], row["diamonds"],
                  row["payout_method"], from_epoch_us(row["requested_at_us"]), from_epoch_us(row["expires_at_us"]),
                  (row["diamonds_transfer_id"], row["cash_transfer_id"]))


def find_payout(executor: Executor, payout_id: str) -> Payout | None:
    row = executor.execute("SELECT * FROM payout WHERE payout_id = ?", (payout_id,)).fetchone()
    return payout_of(row) if row else None


def find_payout_settlement(executor: Executor, payout_id: str) -> PayoutSettlement | None:
    row = executor.execute("SELECT * FROM payout_settlement WHERE payout_id = ?", (payout_id,)).fetchone()
    if row is None:
        return None
    return PayoutSettlement(row["payout_id"], row["request_id"], bool(row["paid"]), row["provider_reference"],
                            row["failure_reason"], from_epoch_us(row["settled_at_us"]))


def find_payout_resolution(executor: Executor, payout: Payout) -> tuple[Phase, dt.datetime] | None:
    row = executor.execute("SELECT phase, created_at_us FROM transfer WHERE pending_id = ?",
                           (payout.pending_transfer_ids[1],)).fetchone()
    return (Phase(row[0]), from_epoch_us(row[1])) if row else None
