"""The gifts store: the ledger schema that enforces its invariants, and group commit.

The invariants are written out in `ledger.py`; this file is where they are enforced:

- Double entry: a transfer row names one debit and one credit account of its own currency
  (composite foreign keys on (account, currency)), with a positive amount (CHECK); the
  balance rows are changed only by triggers on transfer INSERT, each adding the amount to
  one debit column and one credit column.
- No user account negative: CHECK `account_would_go_negative` on the balance row, which
  the trigger's UPDATE re-evaluates inside the same statement as the transfer INSERT.
- Immutable entries: UPDATE and DELETE on entry tables abort (triggers).
- One effect per request id: `request.request_id` is the primary key and every transfer
  references its request; the claim, the effect and the result commit together.
- Two-phase: a resolution row must repeat its pending transfer (trigger), resolves it at
  most once (unique index on `pending_id`), cannot post after the timeout nor expire
  before it (trigger).

All tables are STRICT, so an amount is an integer or the write fails.

Writes go through a `GroupCommitter` with `synchronous=FULL`: many units of work, one
fsync. Reads use a second connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from libs.errors import DomainError, FailedPrecondition
from libs.storage.group_commit import DEFAULT_MAX_BATCH, GroupCommitter
from libs.storage.sqlite import Migration, SqliteDatabase, Transaction, open_service_database
from services.gifts.audit import AuditEvent, Outcome, RecordedAuditEvent
from services.gifts.eligibility import AccountFacts
from services.gifts.gifting import GiftState, GiftsUnitOfWork, Payout, PayoutState, SentGift, TopUp
from services.gifts.idempotency import Parameters, RequestRecord
from services.gifts.ledger import (
    Account,
    Balance,
    Code,
    Currency,
    Entry,
    PLATFORM_ACCOUNTS,
    InsufficientFunds,
    Phase,
    Purpose,
    TransferOrder,
)
from services.gifts.live import LiveAlreadyOpen, LiveSession
from services.gifts.views import FeedItem, LeaderboardEntry, Party, Wallet

R = TypeVar("R")
SERVICE = "gifts"
WRITER_CACHE_KIB = 64 * 1024

_ENTRY_TABLES = ("request", "request_result", "transfer", "gift", "gift_feed", "top_up", "top_up_reversal",
                 "payout", "audit_outbox")


def _immutable(table: str) -> str:
    return (f"CREATE TRIGGER {table}_is_immutable BEFORE UPDATE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} entries are immutable'); END;\n"
            f"CREATE TRIGGER {table}_is_permanent BEFORE DELETE ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{table} entries are permanent'); END;\n")


_SCHEMA_V1 = """
CREATE TABLE account (
    name TEXT PRIMARY KEY,
    currency TEXT NOT NULL CHECK (currency IN ('COIN', 'DIAMOND', 'EUR')),
    may_go_negative INTEGER NOT NULL CHECK (may_go_negative IN (0, 1)),
    debits_posted INTEGER NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
    credits_posted INTEGER NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
    debits_pending INTEGER NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
    credits_pending INTEGER NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
    opened_at_us INTEGER NOT NULL,
    UNIQUE (name, currency),
    CONSTRAINT account_would_go_negative
        CHECK (may_go_negative = 1 OR credits_posted - debits_posted - debits_pending >= 0)
) STRICT, WITHOUT ROWID;

CREATE TABLE request (
    request_id TEXT PRIMARY KEY,
    operation TEXT NOT NULL,
    caller TEXT NOT NULL,
    parameters TEXT NOT NULL,
    received_at_us INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE request_result (
    request_id TEXT PRIMARY KEY REFERENCES request (request_id),
    result TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE transfer (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL REFERENCES request (request_id),
    code TEXT NOT NULL,
    phase TEXT NOT NULL
        CHECK (phase IN ('POSTED', 'PENDING', 'POST_PENDING', 'VOID_PENDING', 'EXPIRE_PENDING')),
    debit_account TEXT NOT NULL,
    credit_account TEXT NOT NULL,
    currency TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0 AND amount <= 1000000000000000),
    pending_id INTEGER REFERENCES transfer (id),
    timeout_us INTEGER,
    gift_id TEXT,
    created_at_us INTEGER NOT NULL,
    CHECK (debit_account <> credit_account),
    CHECK ((phase IN ('POSTED', 'PENDING')) = (pending_id IS NULL)),
    CHECK ((phase = 'PENDING') = (timeout_us IS NOT NULL)),
    FOREIGN KEY (debit_account, currency) REFERENCES account (name, currency),
    FOREIGN KEY (credit_account, currency) REFERENCES account (name, currency)
) STRICT;
CREATE UNIQUE INDEX transfer_resolves_pending_once ON transfer (pending_id) WHERE pending_id IS NOT NULL;
CREATE UNIQUE INDEX transfer_settles_hold_once ON transfer (gift_id)
    WHERE code IN ('DIAMOND_HOLD_RELEASE', 'GIFT_DIAMONDS_REVERSAL');
CREATE INDEX transfer_by_debit ON transfer (debit_account, id);
CREATE INDEX transfer_by_credit ON transfer (credit_account, id);
CREATE INDEX transfer_by_gift ON transfer (gift_id) WHERE gift_id IS NOT NULL;

-- Pending transfers not yet resolved, kept by the triggers below (a work list, not an entry).
CREATE TABLE pending_open (
    transfer_id INTEGER PRIMARY KEY REFERENCES transfer (id),
    timeout_us INTEGER NOT NULL
) STRICT;
CREATE INDEX pending_open_by_timeout ON pending_open (timeout_us);

CREATE TRIGGER transfer_resolution_matches_pending BEFORE INSERT ON transfer WHEN NEW.pending_id IS NOT NULL
BEGIN
    SELECT RAISE(ABORT, 'a resolution must repeat its pending transfer')
    WHERE NOT EXISTS (
        SELECT 1 FROM transfer AS p
        WHERE p.id = NEW.pending_id AND p.phase = 'PENDING' AND p.debit_account = NEW.debit_account
          AND p.credit_account = NEW.credit_account AND p.currency = NEW.currency AND p.amount = NEW.amount);
    SELECT RAISE(ABORT, 'a pending transfer cannot be posted after its timeout nor expired before it')
    WHERE EXISTS (
        SELECT 1 FROM transfer AS p
        WHERE p.id = NEW.pending_id
          AND ((NEW.phase = 'POST_PENDING' AND NEW.created_at_us >= p.timeout_us)
            OR (NEW.phase = 'EXPIRE_PENDING' AND NEW.created_at_us < p.timeout_us)));
END;

CREATE TRIGGER transfer_posts AFTER INSERT ON transfer WHEN NEW.phase = 'POSTED'
BEGIN
    UPDATE account SET debits_posted = debits_posted + NEW.amount WHERE name = NEW.debit_account;
    UPDATE account SET credits_posted = credits_posted + NEW.amount WHERE name = NEW.credit_account;
END;

CREATE TRIGGER transfer_pends AFTER INSERT ON transfer WHEN NEW.phase = 'PENDING'
BEGIN
    UPDATE account SET debits_pending = debits_pending + NEW.amount WHERE name = NEW.debit_account;
    UPDATE account SET credits_pending = credits_pending + NEW.amount WHERE name = NEW.credit_account;
    INSERT INTO pending_open (transfer_id, timeout_us) VALUES (NEW.id, NEW.timeout_us);
END;

CREATE TRIGGER transfer_posts_pending AFTER INSERT ON transfer WHEN NEW.phase = 'POST_PENDING'
BEGIN
    UPDATE account SET debits_pending = debits_pending - NEW.amount, debits_posted = debits_posted + NEW.amount
    WHERE name = NEW.debit_account;
    UPDATE account SET credits_pending = credits_pending - NEW.amount,
                       credits_posted = credits_posted + NEW.amount
    WHERE name = NEW.credit_account;
    DELETE FROM pending_open WHERE transfer_id = NEW.pending_id;
END;

CREATE TRIGGER transfer_releases_pending AFTER INSERT ON transfer
WHEN NEW.phase IN ('VOID_PENDING', 'EXPIRE_PENDING')
BEGIN
    UPDATE account SET debits_pending = debits_pending - NEW.amount WHERE name = NEW.debit_account;
    UPDATE account SET credits_pending = credits_pending - NEW.amount WHERE name = NEW.credit_account;
    DELETE FROM pending_open WHERE transfer_id = NEW.pending_id;
END;

CREATE TABLE live_session (
    live_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    title TEXT NOT NULL,
    started_at_us INTEGER NOT NULL,
    deadline_us INTEGER NOT NULL,
    gifts_barred_reason TEXT NOT NULL,
    ended_at_us INTEGER,
    end_reason TEXT,
    CHECK ((ended_at_us IS NULL) = (end_reason IS NULL)),
    CHECK (deadline_us > started_at_us)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX one_open_live_per_host ON live_session (host) WHERE ended_at_us IS NULL;
CREATE INDEX live_by_deadline ON live_session (deadline_us) WHERE ended_at_us IS NULL;
CREATE TRIGGER live_session_ends_once BEFORE UPDATE ON live_session
WHEN OLD.ended_at_us IS NOT NULL OR NEW.live_id <> OLD.live_id OR NEW.host <> OLD.host
  OR NEW.started_at_us <> OLD.started_at_us OR NEW.deadline_us <> OLD.deadline_us
BEGIN
    SELECT RAISE(ABORT, 'a LIVE session only changes by ending, once');
END;

CREATE TABLE account_facts (
    user_id TEXT PRIMARY KEY,
    follower_count INTEGER NOT NULL CHECK (follower_count >= 0),
    good_standing INTEGER NOT NULL CHECK (good_standing IN (0, 1)),
    political_or_government INTEGER NOT NULL CHECK (political_or_government IN (0, 1)),
    identity_verified INTEGER NOT NULL CHECK (identity_verified IN (0, 1)),
    joined_at_us INTEGER,
    updated_at_us INTEGER NOT NULL,
    updated_by TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE gift (
    gift_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    live_id TEXT NOT NULL REFERENCES live_session (live_id),
    sender TEXT NOT NULL,
    creator TEXT NOT NULL,
    catalog_gift TEXT NOT NULL,
    count INTEGER NOT NULL CHECK (count > 0),
    coins INTEGER NOT NULL CHECK (coins > 0),
    diamonds INTEGER NOT NULL CHECK (diamonds >= 0),
    sent_at_us INTEGER NOT NULL,
    hold_reasons TEXT NOT NULL,
    CHECK (sender <> creator)
) STRICT;
CREATE INDEX gift_by_sender ON gift (sender, sent_at_us);
CREATE INDEX gift_by_live ON gift (live_id);
CREATE INDEX gift_by_sent_at ON gift (sent_at_us);

-- The LIVE overlay's log: one row per gift that reached the creator, in commit order.
CREATE TABLE gift_feed (
    sequence INTEGER PRIMARY KEY,
    live_id TEXT NOT NULL,
    gift_id TEXT NOT NULL UNIQUE REFERENCES gift (gift_id),
    posted_at_us INTEGER NOT NULL
) STRICT;
CREATE INDEX gift_feed_by_live ON gift_feed (live_id, sequence);

-- Diamonds waiting out their hold, by gift (a work list: a row leaves when released or clawed back).
CREATE TABLE diamond_hold (
    gift_id TEXT PRIMARY KEY REFERENCES gift (gift_id),
    creator TEXT NOT NULL,
    sender TEXT NOT NULL,
    matures_at_us INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX diamond_hold_by_maturity ON diamond_hold (matures_at_us);
CREATE INDEX diamond_hold_by_creator ON diamond_hold (creator, matures_at_us);
CREATE INDEX diamond_hold_by_sender ON diamond_hold (sender);

CREATE TABLE top_up (
    top_up_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    user_id TEXT NOT NULL,
    provider TEXT NOT NULL,
    receipt_id TEXT NOT NULL,
    pack_id TEXT NOT NULL,
    coins INTEGER NOT NULL CHECK (coins > 0),
    price_eur_cents INTEGER NOT NULL CHECK (price_eur_cents > 0),
    purchased_at_us INTEGER NOT NULL,
    created_at_us INTEGER NOT NULL,
    CONSTRAINT receipt_redeemed_once UNIQUE (provider, receipt_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE top_up_reversal (
    top_up_id TEXT PRIMARY KEY REFERENCES top_up (top_up_id),
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    kind TEXT NOT NULL CHECK (kind IN ('REFUND', 'CHARGEBACK')),
    reversed_at_us INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE payout (
    payout_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    user_id TEXT NOT NULL,
    eur_cents INTEGER NOT NULL CHECK (eur_cents > 0),
    diamonds INTEGER NOT NULL CHECK (diamonds > 0),
    requested_at_us INTEGER NOT NULL,
    diamonds_transfer_id INTEGER NOT NULL UNIQUE REFERENCES transfer (id),
    cash_transfer_id INTEGER NOT NULL UNIQUE REFERENCES transfer (id)
) STRICT, WITHOUT ROWID;
CREATE INDEX payout_by_user ON payout (user_id, requested_at_us);

CREATE TABLE audit_outbox (
    sequence INTEGER PRIMARY KEY,
    event TEXT NOT NULL
) STRICT;
CREATE TABLE audit_delivery (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    delivered_through INTEGER NOT NULL CHECK (delivered_through >= 0)
) STRICT;
INSERT INTO audit_delivery (id, delivered_through) VALUES (1, 0);
""" + "".join(_immutable(table) for table in _ENTRY_TABLES)

MIGRATIONS = [Migration(1, _SCHEMA_V1)]

_ENTRY_COLUMNS = ", ".join(f"transfer.{column}" for column in (
    "id", "request_id", "code", "phase", "debit_account", "credit_account", "currency", "amount", "created_at_us",
    "pending_id", "timeout_us", "gift_id"))


def _entry(row: sqlite3.Row) -> Entry:
    return Entry(row["id"], row["request_id"], Code(row["code"]), Phase(row["phase"]), row["debit_account"],
                 row["credit_account"], Currency(row["currency"]), row["amount"], row["created_at_us"],
                 row["pending_id"], row["timeout_us"], row["gift_id"])


def _balance(row: sqlite3.Row) -> Balance:
    return Balance(row["name"], Currency(row["currency"]), row["debits_posted"], row["credits_posted"],
                   row["debits_pending"], row["credits_pending"])


def _live(row: sqlite3.Row) -> LiveSession:
    return LiveSession(row["live_id"], row["host"], row["title"], row["started_at_us"], row["deadline_us"],
                       row["gifts_barred_reason"], row["ended_at_us"], row["end_reason"])


def _gift(row: sqlite3.Row) -> SentGift:
    return SentGift(row["gift_id"], row["request_id"], row["live_id"], row["sender"], row["creator"],
                    row["catalog_gift"], row["count"], row["coins"], row["diamonds"], row["sent_at_us"],
                    row["hold_reasons"])


def _facts(user_id: str, row: sqlite3.Row | None) -> AccountFacts:
    if row is None:
        return AccountFacts(user_id)
    return AccountFacts(user_id, row["follower_count"], bool(row["good_standing"]),
                        bool(row["political_or_government"]), bool(row["identity_verified"]), row["joined_at_us"])


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class SqliteUnitOfWork:
    """One unit of work inside a group-commit batch: the store side of every use-case protocol."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self._unaudited_transfers: list[int] = []

    # Ledger

    def open_account(self, account: Account, now_us: int) -> None:
        self._tx.execute(
            "INSERT INTO account (name, currency, may_go_negative, opened_at_us) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (account.name, account.currency.value, int(account.may_go_negative), now_us))

    def post(self, request_id: str, orders: list[TransferOrder], now_us: int) -> list[int]:
        return self._write_all(request_id, orders, Phase.POSTED, now_us, None)

    def pend(self, request_id: str, orders: list[TransferOrder], now_us: int, timeout_us: int) -> list[int]:
        return self._write_all(request_id, orders, Phase.PENDING, now_us, timeout_us)

    def _write_all(self, request_id: str, orders: list[TransferOrder], phase: Phase, now_us: int,
                   timeout_us: int | None) -> list[int]:
        written: list[int] = []
        for order in orders:
            try:
                cursor = self._tx.execute(
                    "INSERT INTO transfer (request_id, code, phase, debit_account, credit_account, currency, "
                    "amount, timeout_us, gift_id, created_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (request_id, order.code.value, phase.value, order.debit.name, order.credit.name,
                     order.currency.value, order.amount, timeout_us, order.gift_id, now_us))
            except sqlite3.IntegrityError as error:
                if "account_would_go_negative" not in str(error):
                    raise
                # Report the whole set's demand on the account, against what it held before the set.
                debited_before = sum(o.amount for o in orders[:len(written)] if o.debit == order.debit)
                balance = self.balance(order.debit)
                raise InsufficientFunds(
                    order.debit, available=(balance.available if balance else 0) + debited_before,
                    required=sum(o.amount for o in orders if o.debit == order.debit)) from None
            written.append(int(cursor.lastrowid or 0))
        self._unaudited_transfers.extend(written)
        return written

    def resolve(self, request_id: str, pending_ids: list[int], phase: Phase, now_us: int) -> None:
        for pending_id in pending_ids:
            try:
                cursor = self._tx.execute(
                    "INSERT INTO transfer (request_id, code, phase, debit_account, credit_account, currency, "
                    "amount, pending_id, gift_id, created_at_us) "
                    "SELECT ?, code, ?, debit_account, credit_account, currency, amount, id, gift_id, ? "
                    "FROM transfer WHERE id = ? AND phase = 'PENDING'",
                    (request_id, phase.value, now_us, pending_id))
            except sqlite3.IntegrityError as error:
                if "transfer.pending_id" not in str(error):
                    raise
                raise FailedPrecondition("the pending transfer was already resolved",
                                         reason="PENDING_ALREADY_RESOLVED",
                                         metadata={"transfer_id": str(pending_id)}) from None
            if cursor.rowcount != 1:
                raise ValueError(f"transfer {pending_id} is not a pending transfer")
            self._unaudited_transfers.append(int(cursor.lastrowid or 0))

    def balance(self, account: Account) -> Balance | None:
        row = self._tx.execute("SELECT * FROM account WHERE name = ?", (account.name,)).fetchone()
        return _balance(row) if row else None

    # Requests

    def claim_request(self, request_id: str, operation: str, caller: str, parameters: Parameters,
                      now_us: int) -> RequestRecord | None:
        claimed = self._tx.execute(
            "INSERT INTO request (request_id, operation, caller, parameters, received_at_us) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (request_id) DO NOTHING",
            (request_id, operation, caller, _json(parameters), now_us)).rowcount
        if claimed:
            return None
        row = self._tx.execute(
            "SELECT r.operation, r.caller, r.parameters, x.result FROM request AS r "
            "LEFT JOIN request_result AS x USING (request_id) WHERE r.request_id = ?", (request_id,)).fetchone()
        return RequestRecord(request_id, row["operation"], row["caller"], json.loads(row["parameters"]),
                             json.loads(row["result"]) if row["result"] is not None else None)

    def record_result(self, request_id: str, result: dict[str, Any]) -> None:
        self._tx.execute("INSERT INTO request_result (request_id, result) VALUES (?, ?)", (request_id, _json(result)))

    # LIVE sessions

    def insert_live(self, session: LiveSession) -> None:
        try:
            self._tx.execute(
                "INSERT INTO live_session (live_id, host, title, started_at_us, deadline_us, gifts_barred_reason) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (session.live_id, session.host, session.title, session.started_at_us, session.deadline_us,
                 session.gifts_barred_reason))
        except sqlite3.IntegrityError as error:
            if "live_session.host" not in str(error):
                raise
            open_live = self.open_live_of(session.host)
            raise LiveAlreadyOpen(open_live.live_id if open_live else "") from None

    def live(self, live_id: str) -> LiveSession | None:
        row = self._tx.execute("SELECT * FROM live_session WHERE live_id = ?", (live_id,)).fetchone()
        return _live(row) if row else None

    def open_live_of(self, host: str) -> LiveSession | None:
        row = self._tx.execute("SELECT * FROM live_session WHERE host = ? AND ended_at_us IS NULL",
                               (host,)).fetchone()
        return _live(row) if row else None

    def end_live(self, live_id: str, ended_at_us: int, reason: str) -> bool:
        return self._tx.execute(
            "UPDATE live_session SET ended_at_us = ?, end_reason = ? WHERE live_id = ? AND ended_at_us IS NULL",
            (ended_at_us, reason, live_id)).rowcount == 1

    def overdue_lives(self, now_us: int, limit: int) -> list[LiveSession]:
        rows = self._tx.execute(
            "SELECT * FROM live_session WHERE ended_at_us IS NULL AND deadline_us <= ? ORDER BY deadline_us LIMIT ?",
            (now_us, limit))
        return [_live(row) for row in rows]

    # Eligibility facts

    def account_facts(self, user_id: str) -> AccountFacts:
        row = self._tx.execute("SELECT * FROM account_facts WHERE user_id = ?", (user_id,)).fetchone()
        return _facts(user_id, row)

    def put_account_facts(self, facts: AccountFacts, *, updated_by: str, now_us: int) -> None:
        self._tx.execute(
            "INSERT OR REPLACE INTO account_facts (user_id, follower_count, good_standing, political_or_government, "
            "identity_verified, joined_at_us, updated_at_us, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (facts.user_id, facts.follower_count, int(facts.good_standing), int(facts.political_or_government),
             int(facts.identity_verified), facts.joined_at_us, now_us, updated_by))

    def coins_account_opened_at(self, user_id: str) -> int | None:
        row = self._tx.execute("SELECT opened_at_us FROM account WHERE name = ?",
                               (Account.of_user(user_id, Purpose.COINS).name,)).fetchone()
        return row[0] if row else None

    # Gift history (fraud rules)

    def gifts_sent_since(self, sender: str, since_us: int) -> tuple[int, int]:
        row = self._tx.execute("SELECT COUNT(*), COALESCE(SUM(coins), 0) FROM gift WHERE sender = ? AND sent_at_us > ?",
                               (sender, since_us)).fetchone()
        return row[0], row[1]

    def gifting_path_exists(self, from_user: str, to_user: str, max_hops: int, since_us: int) -> bool:
        row = self._tx.execute(
            "WITH RECURSIVE reached (user_id, hops) AS ("
            "  SELECT ?, 0"
            "  UNION"
            "  SELECT gift.creator, reached.hops + 1 FROM reached JOIN gift ON gift.sender = reached.user_id"
            "  WHERE reached.hops < ? AND gift.sent_at_us > ?"
            ") SELECT 1 FROM reached WHERE user_id = ? AND hops > 0 LIMIT 1",
            (from_user, max_hops, since_us, to_user)).fetchone()
        return row is not None

    # Gifts

    def insert_gift(self, gift: SentGift) -> None:
        self._tx.execute(
            "INSERT INTO gift (gift_id, request_id, live_id, sender, creator, catalog_gift, count, coins, diamonds, "
            "sent_at_us, hold_reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (gift.gift_id, gift.request_id, gift.live_id, gift.sender, gift.creator, gift.catalog_gift, gift.count,
             gift.coins, gift.diamonds, gift.sent_at_us, gift.hold_reasons))

    def gift(self, gift_id: str) -> SentGift | None:
        row = self._tx.execute("SELECT * FROM gift WHERE gift_id = ?", (gift_id,)).fetchone()
        return _gift(row) if row else None

    def append_to_feed(self, gift: SentGift, now_us: int) -> int:
        cursor = self._tx.execute("INSERT INTO gift_feed (live_id, gift_id, posted_at_us) VALUES (?, ?, ?)",
                                  (gift.live_id, gift.gift_id, now_us))
        return int(cursor.lastrowid or 0)

    def place_diamond_hold(self, gift: SentGift, matures_at_us: int) -> None:
        self._tx.execute("INSERT INTO diamond_hold (gift_id, creator, sender, matures_at_us) VALUES (?, ?, ?, ?)",
                         (gift.gift_id, gift.creator, gift.sender, matures_at_us))

    def settle_diamond_hold(self, gift_id: str) -> None:
        if self._tx.execute("DELETE FROM diamond_hold WHERE gift_id = ?", (gift_id,)).rowcount != 1:
            raise ValueError(f"gift {gift_id} has no diamonds on hold")

    def matured_holds(self, now_us: int, limit: int, creator: str | None = None) -> list[str]:
        if creator is None:
            rows = self._tx.execute("SELECT gift_id FROM diamond_hold WHERE matures_at_us <= ? "
                                    "ORDER BY matures_at_us LIMIT ?", (now_us, limit))
        else:
            rows = self._tx.execute("SELECT gift_id FROM diamond_hold WHERE creator = ? AND matures_at_us <= ? "
                                    "ORDER BY matures_at_us LIMIT ?", (creator, now_us, limit))
        return [row[0] for row in rows]

    def held_diamond_gifts_sent_by(self, sender: str) -> list[str]:
        rows = self._tx.execute(
            "SELECT h.gift_id FROM diamond_hold AS h JOIN gift AS g USING (gift_id) WHERE h.sender = ? "
            "ORDER BY g.sent_at_us DESC, g.gift_id", (sender,))
        return [row[0] for row in rows]

    def gift_entries(self, gift_id: str) -> list[Entry]:
        rows = self._tx.execute(f"SELECT {_ENTRY_COLUMNS} FROM transfer WHERE gift_id = ? ORDER BY id", (gift_id,))
        return [_entry(row) for row in rows]

    def unresolved_pending(self, *, gift_id: str | None = None, transfer_ids: tuple[int, ...] = ()) -> list[Entry]:
        if gift_id is not None:
            rows = self._tx.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM transfer JOIN pending_open ON pending_open.transfer_id = transfer.id "
                "WHERE transfer.gift_id = ? ORDER BY id", (gift_id,))
        else:
            marks = ",".join("?" * len(transfer_ids))
            rows = self._tx.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM transfer JOIN pending_open ON pending_open.transfer_id = transfer.id "
                f"WHERE transfer.id IN ({marks}) ORDER BY id", transfer_ids)
        return [_entry(row) for row in rows]

    def unresolved_held_gifts_of(self, sender: str) -> list[str]:
        rows = self._tx.execute(
            "SELECT DISTINCT gift.gift_id FROM gift JOIN transfer ON transfer.gift_id = gift.gift_id "
            "JOIN pending_open ON pending_open.transfer_id = transfer.id "
            "WHERE gift.sender = ? AND gift.hold_reasons <> '' ORDER BY gift.gift_id", (sender,))
        return [row[0] for row in rows]

    def expired_pending(self, now_us: int, limit: int) -> list[Entry]:
        rows = self._tx.execute(
            f"SELECT {_ENTRY_COLUMNS} FROM pending_open JOIN transfer ON transfer.id = pending_open.transfer_id "
            "WHERE pending_open.timeout_us <= ? ORDER BY pending_open.timeout_us, transfer.id LIMIT ?",
            (now_us, limit))
        return [_entry(row) for row in rows]

    # Top-ups

    def insert_top_up(self, top_up: TopUp, now_us: int) -> None:
        try:
            self._tx.execute(
                "INSERT INTO top_up (top_up_id, request_id, user_id, provider, receipt_id, pack_id, coins, "
                "price_eur_cents, purchased_at_us, created_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (top_up.top_up_id, top_up.request_id, top_up.user_id, top_up.provider, top_up.receipt_id,
                 top_up.pack_id, top_up.coins, top_up.price_eur_cents, top_up.purchased_at_us, now_us))
        except sqlite3.IntegrityError as error:
            if "top_up.provider, top_up.receipt_id" not in str(error):
                raise
            raise FailedPrecondition("the receipt was already redeemed", reason="RECEIPT_ALREADY_REDEEMED",
                                     metadata={"receipt_id": top_up.receipt_id}) from None

    def top_up(self, top_up_id: str) -> TopUp | None:
        row = self._tx.execute("SELECT * FROM top_up WHERE top_up_id = ?", (top_up_id,)).fetchone()
        if row is None:
            return None
        return TopUp(row["top_up_id"], row["request_id"], row["user_id"], row["provider"], row["receipt_id"],
                     row["pack_id"], row["coins"], row["price_eur_cents"], row["purchased_at_us"])

    def insert_top_up_reversal(self, top_up_id: str, request_id: str, kind: str, now_us: int) -> None:
        try:
            self._tx.execute("INSERT INTO top_up_reversal (top_up_id, request_id, kind, reversed_at_us) "
                             "VALUES (?, ?, ?, ?)", (top_up_id, request_id, kind, now_us))
        except sqlite3.IntegrityError as error:
            if "top_up_reversal.top_up_id" not in str(error):
                raise
            raise FailedPrecondition("the top-up was already reversed", reason="TOP_UP_ALREADY_REVERSED",
                                     metadata={"top_up": top_up_id}) from None

    # Payouts

    def insert_payout(self, payout: Payout) -> None:
        diamonds_transfer, cash_transfer = payout.pending_transfer_ids
        self._tx.execute(
            "INSERT INTO payout (payout_id, request_id, user_id, eur_cents, diamonds, requested_at_us, "
            "diamonds_transfer_id, cash_transfer_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (payout.payout_id, payout.request_id, payout.user_id, payout.eur_cents, payout.diamonds,
             payout.requested_at_us, diamonds_transfer, cash_transfer))

    def payout(self, payout_id: str) -> Payout | None:
        row = self._tx.execute("SELECT * FROM payout WHERE payout_id = ?", (payout_id,)).fetchone()
        return _payout(row) if row else None

    def payout_cents_since(self, user_id: str, since_us: int) -> int:
        row = self._tx.execute(
            "SELECT COALESCE(SUM(p.eur_cents), 0) FROM payout AS p WHERE p.user_id = ? AND p.requested_at_us > ? "
            "AND NOT EXISTS (SELECT 1 FROM transfer AS r WHERE r.pending_id = p.cash_transfer_id "
            "AND r.phase IN ('VOID_PENDING', 'EXPIRE_PENDING'))", (user_id, since_us)).fetchone()
        return int(row[0])

    # Audit

    def record_audit(self, event: AuditEvent) -> None:
        transfers, self._unaudited_transfers = tuple(self._unaudited_transfers), []
        self._tx.execute("INSERT INTO audit_outbox (event) VALUES (?)",
                         (_json(_audit_fields(event, transfers)),))


def _payout(row: sqlite3.Row) -> Payout:
    return Payout(row["payout_id"], row["request_id"], row["user_id"], row["eur_cents"], row["diamonds"],
                  row["requested_at_us"], (row["diamonds_transfer_id"], row["cash_transfer_id"]))


def _audit_fields(event: AuditEvent, transfers: tuple[int, ...]) -> dict[str, Any]:
    return {"action": event.action, "actor": event.actor, "outcome": event.outcome.value,
            "request_id": event.request_id, "resource": event.resource, "occurred_at_us": event.occurred_at_us,
            "reason": event.reason, "details": event.details, "transfer_ids": list(event.transfer_ids + transfers)}


def _audit_event(fields: dict[str, Any]) -> AuditEvent:
    return AuditEvent(fields["action"], fields["actor"], Outcome(fields["outcome"]), fields["request_id"],
                      fields["resource"], fields["occurred_at_us"], fields["reason"], fields["details"],
                      tuple(fields["transfer_ids"]))


class GiftsStore:
    """Owns the gifts database: a group-committing writer and a reader beside it."""

    def __init__(self, *, root: Path | None = None, synchronous: str = "FULL",
                 max_batch: int = DEFAULT_MAX_BATCH) -> None:
        writer = open_service_database(SERVICE, MIGRATIONS, synchronous=synchronous, root=root)
        self._writer = writer
        self.reader = SqliteDatabase(writer.path, synchronous=synchronous)
        with writer.transaction() as tx:
            # The hot set (platform accounts, recent index pages) must stay in memory.
            tx.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            for account in PLATFORM_ACCOUNTS:
                SqliteUnitOfWork(tx).open_account(account, 0)
        self._committer = GroupCommitter(writer, max_batch=max_batch, name="gifts-commit")

    def submit(self, work: Callable[[GiftsUnitOfWork], R], *,
               on_refused: Callable[[GiftsUnitOfWork, DomainError], None] | None = None) -> Future[R]:
        """Run `work` in the next durable batch; the future resolves after its COMMIT."""
        refused = None if on_refused is None else (lambda tx, error: on_refused(SqliteUnitOfWork(tx), error))
        return self._committer.submit(lambda tx: work(SqliteUnitOfWork(tx)), on_refused=refused)

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        self._committer.add_commit_listener(listener)

    def close(self) -> None:
        self._committer.close()
        self._writer.close()
        self.reader.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self.reader.reading() as connection:
            yield connection

    # Read side -----------------------------------------------------------------------------

    def wallet(self, user_id: str) -> Wallet:
        purposes = {Account.of_user(user_id, purpose).name: purpose
                    for purpose in (Purpose.COINS, Purpose.DIAMONDS_ON_HOLD, Purpose.DIAMONDS)}
        with self._read() as connection:
            rows = connection.execute(f"SELECT * FROM account WHERE name IN ({','.join('?' * len(purposes))})",
                                      tuple(purposes)).fetchall()
        return Wallet(user_id, {purposes[row["name"]]: _balance(row) for row in rows})

    def statement(self, user_id: str, *, before_id: int | None, limit: int) -> list[Entry]:
        """The user's transfers, newest first, strictly before `before_id`."""
        names = tuple(Account.of_user(user_id, purpose).name
                      for purpose in (Purpose.COINS, Purpose.DIAMONDS_ON_HOLD, Purpose.DIAMONDS))
        bound = before_id if before_id is not None else 2**63 - 1
        marks = ",".join("?" * len(names))
        with self._read() as connection:
            rows = connection.execute(
                f"SELECT {_ENTRY_COLUMNS} FROM transfer WHERE id < ? AND "
                f"(debit_account IN ({marks}) OR credit_account IN ({marks})) ORDER BY id DESC LIMIT ?",
                (bound, *names, *names, limit)).fetchall()
        return [_entry(row) for row in rows]

    def live(self, live_id: str) -> LiveSession | None:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM live_session WHERE live_id = ?", (live_id,)).fetchone()
        return _live(row) if row else None

    def feed(self, live_id: str, *, after_sequence: int, limit: int) -> list[FeedItem]:
        with self._read() as connection:
            rows = connection.execute(
                "SELECT f.sequence, f.live_id, f.gift_id, g.sender, g.catalog_gift, g.count, g.coins, g.diamonds, "
                "f.posted_at_us FROM gift_feed AS f JOIN gift AS g USING (gift_id) "
                "WHERE f.live_id = ? AND f.sequence > ? ORDER BY f.sequence LIMIT ?",
                (live_id, after_sequence, limit)).fetchall()
        return [FeedItem(*row) for row in rows]

    def leaderboard(self, *, party: Party, limit: int, live_id: str | None = None, creator: str | None = None,
                    since_us: int | None = None, until_us: int | None = None) -> list[LeaderboardEntry]:
        """Coins given (or received), from the gift legs of the ledger minus their reversals.

        Held gifts count once posted; voided and expired ones never post, so never count.
        """
        column = "g.sender" if party is Party.GIFTER else "g.creator"
        filters, parameters = ["1 = 1"], []
        for clause, value in (("g.live_id = ?", live_id), ("g.creator = ?", creator),
                              ("g.sent_at_us >= ?", since_us), ("g.sent_at_us < ?", until_us)):
            if value is not None:
                filters.append(clause)
                parameters.append(value)
        with self._read() as connection:
            rows = connection.execute(
                f"SELECT {column} AS party, SUM(CASE WHEN t.code IN ('GIFT_FEE', 'GIFT_SHARE') THEN t.amount "
                "ELSE -t.amount END) AS net_coins "
                "FROM gift AS g JOIN transfer AS t ON t.gift_id = g.gift_id "
                "WHERE t.phase IN ('POSTED', 'POST_PENDING') "
                "AND t.code IN ('GIFT_FEE', 'GIFT_SHARE', 'GIFT_FEE_REVERSAL', 'GIFT_SHARE_REVERSAL') "
                f"AND {' AND '.join(filters)} GROUP BY party HAVING net_coins > 0 ORDER BY net_coins DESC, party LIMIT ?",
                (*parameters, limit)).fetchall()
        return [LeaderboardEntry(rank, row["party"], row["net_coins"]) for rank, row in enumerate(rows, start=1)]

    def gift_state(self, gift_id: str) -> tuple[SentGift, GiftState] | None:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM gift WHERE gift_id = ?", (gift_id,)).fetchone()
            if row is None:
                return None
            legs = connection.execute("SELECT phase, code FROM transfer WHERE gift_id = ?", (gift_id,)).fetchall()
        phases, codes = {leg[0] for leg in legs}, {leg[1] for leg in legs}
        if codes & {Code.GIFT_FEE_REVERSAL.value, Code.GIFT_SHARE_REVERSAL.value, Code.GIFT_DIAMONDS_REVERSAL.value}:
            state = GiftState.REVERSED
        elif Phase.EXPIRE_PENDING.value in phases:
            state = GiftState.EXPIRED
        elif Phase.VOID_PENDING.value in phases:
            state = GiftState.REJECTED
        elif Phase.PENDING.value in phases and Phase.POST_PENDING.value not in phases:
            state = GiftState.HELD
        else:
            state = GiftState.POSTED
        return _gift(row), state

    def payout_state(self, payout_id: str) -> tuple[Payout, PayoutState] | None:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM payout WHERE payout_id = ?", (payout_id,)).fetchone()
            if row is None:
                return None
            resolution = connection.execute("SELECT phase FROM transfer WHERE pending_id = ?",
                                            (row["cash_transfer_id"],)).fetchone()
        state = {None: PayoutState.PENDING, Phase.POST_PENDING.value: PayoutState.PAID,
                 Phase.VOID_PENDING.value: PayoutState.FAILED,
                 Phase.EXPIRE_PENDING.value: PayoutState.EXPIRED}[resolution[0] if resolution else None]
        return _payout(row), state

    def account_facts(self, user_id: str) -> AccountFacts:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM account_facts WHERE user_id = ?", (user_id,)).fetchone()
        return _facts(user_id, row)

    # The audit outbox, for `AuditRelay` -----------------------------------------------------

    def audit_events_after(self, sequence: int, limit: int) -> list[RecordedAuditEvent]:
        with self._read() as connection:
            rows = connection.execute("SELECT sequence, event FROM audit_outbox WHERE sequence > ? "
                                      "ORDER BY sequence LIMIT ?", (sequence, limit)).fetchall()
        return [RecordedAuditEvent(row[0], _audit_event(json.loads(row[1]))) for row in rows]

    def audit_delivered_through(self) -> int:
        with self._read() as connection:
            return int(connection.execute("SELECT delivered_through FROM audit_delivery").fetchone()[0])

    def mark_audit_delivered(self, sequence: int) -> None:
        def advance(tx: Transaction) -> None:
            tx.execute("UPDATE audit_delivery SET delivered_through = MAX(delivered_through, ?)", (sequence,))

        self._committer.submit(advance).result()
