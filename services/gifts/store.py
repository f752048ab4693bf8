"""The gifts store: the ledger schema that enforces its invariants, and group commit.

The invariants are written out in `ledger.py`; this file is where they are enforced:

- Double entry: a transfer row names one debit and one credit account of its own currency
  (composite foreign keys on (account, currency)), with a positive amount (CHECK); the
  balance rows are changed only by the trigger on transfer INSERT, which adds the amount to
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

Writes go through a `UnitCommitter` with `synchronous=FULL`: many units of work, one
fsync. Reads use a second connection, which WAL lets run beside the writer.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

from libs.errors import DomainError, FailedPrecondition
from libs.storage.paths import data_dir
from libs.storage.sqlite import Migration, SqliteDatabase, Transaction, open_service_database
from libs.storage.unit_commit import DEFAULT_MAX_BATCH, RefusalRecorder, UnitCommitter
from services.gifts.audit import AuditEvent, Outcome, RecordedAuditEvent
from services.gifts.eligibility import AccountFacts
from services.gifts.gifting import (
    GiftState,
    GiftsUnitOfWork,
    Payout,
    PayoutResult,
    PayoutSettlement,
    PayoutState,
    SentGift,
    TopUp,
    current_payout,
)
from services.gifts.idempotency import Parameters, RequestRecord
from services.gifts.ledger import (
    GIFT_REVERSAL_CODES,
    PLATFORM_ACCOUNTS,
    Account,
    Balance,
    Code,
    Currency,
    Entry,
    InsufficientFunds,
    Phase,
    Purpose,
    TransferOrder,
)
from services.gifts.live import LiveAlreadyOpen, LiveSession, LiveState
from services.gifts.views import (
    AccountStanding,
    FeedItem,
    LeaderboardEntry,
    LiveSummary,
    Party,
    StatementLine,
    Wallet,
)

R = TypeVar("R")
SERVICE = "gifts"


def database_path(root: Path | None = None) -> Path:
    return (root or data_dir()) / SERVICE / f"{SERVICE}.db"

_WALLET_PURPOSES = frozenset({Purpose.COINS, Purpose.DIAMONDS_ON_HOLD, Purpose.DIAMONDS})
MAX_REQUEST_ENTRIES = 10_000  # more than any one request writes (a sweep writes a few hundred)
WRITER_CACHE_KIB = 64 * 1024

_ENTRY_TABLES = ("request", "request_result", "transfer", "gift", "gift_feed", "top_up", "top_up_reversal",
                 "payout", "payout_settlement", "audit_outbox")


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

-- The only writer of balances: one UPDATE of both accounts per transfer (cheaper than a
-- trigger per phase, measured), so the CHECK above judges the debit in the same statement.
--   POSTED          posted += amount
--   PENDING         pending += amount
--   POST_PENDING    pending -= amount, posted += amount
--   VOID/EXPIRE     pending -= amount
CREATE TRIGGER transfer_moves_balances AFTER INSERT ON transfer
BEGIN
    UPDATE account SET
        debits_posted = debits_posted + CASE
            WHEN name = NEW.debit_account AND NEW.phase IN ('POSTED', 'POST_PENDING') THEN NEW.amount ELSE 0 END,
        credits_posted = credits_posted + CASE
            WHEN name = NEW.credit_account AND NEW.phase IN ('POSTED', 'POST_PENDING') THEN NEW.amount ELSE 0 END,
        debits_pending = debits_pending + CASE
            WHEN name <> NEW.debit_account OR NEW.phase = 'POSTED' THEN 0
            WHEN NEW.phase = 'PENDING' THEN NEW.amount ELSE -NEW.amount END,
        credits_pending = credits_pending + CASE
            WHEN name <> NEW.credit_account OR NEW.phase = 'POSTED' THEN 0
            WHEN NEW.phase = 'PENDING' THEN NEW.amount ELSE -NEW.amount END
    WHERE name IN (NEW.debit_account, NEW.credit_account);
END;

CREATE TRIGGER transfer_opens_pending AFTER INSERT ON transfer WHEN NEW.phase = 'PENDING'
BEGIN
    INSERT INTO pending_open (transfer_id, timeout_us) VALUES (NEW.id, NEW.timeout_us);
END;

CREATE TRIGGER transfer_closes_pending AFTER INSERT ON transfer WHEN NEW.pending_id IS NOT NULL
BEGIN
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
    restriction_reason TEXT NOT NULL,
    category TEXT NOT NULL CHECK (category IN ('PERSONAL', 'BUSINESS', 'POLITICAL', 'GOVERNMENT')),
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
    fee_coins INTEGER NOT NULL CHECK (fee_coins >= 0 AND fee_coins <= coins),
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
    payout_method TEXT NOT NULL,
    requested_at_us INTEGER NOT NULL,
    expires_at_us INTEGER NOT NULL,
    diamonds_transfer_id INTEGER NOT NULL UNIQUE REFERENCES transfer (id),
    cash_transfer_id INTEGER NOT NULL UNIQUE REFERENCES transfer (id)
) STRICT, WITHOUT ROWID;
CREATE INDEX payout_by_user ON payout (user_id, requested_at_us);

CREATE TABLE payout_settlement (
    payout_id TEXT PRIMARY KEY REFERENCES payout (payout_id),
    request_id TEXT NOT NULL UNIQUE REFERENCES request (request_id),
    paid INTEGER NOT NULL CHECK (paid IN (0, 1)),
    provider_reference TEXT NOT NULL,
    failure_reason TEXT NOT NULL,
    settled_at_us INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE audit_outbox (
    sequence INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL
) STRICT;
-- `log_id` names this outbox for good, so (log_id, sequence) is an event's lasting identity.
CREATE TABLE audit_delivery (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    log_id TEXT NOT NULL,
    delivered_through INTEGER NOT NULL CHECK (delivered_through >= 0)
) STRICT;
INSERT INTO audit_delivery (id, log_id, delivered_through) VALUES (1, lower(hex(randomblob(16))), 0);
-- Events compliance refused for good (after they were isolated from their batch), and why.
CREATE TABLE audit_set_aside (
    sequence INTEGER PRIMARY KEY REFERENCES audit_outbox (sequence),
    error TEXT NOT NULL
) STRICT;
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
                    row["catalog_gift"], row["count"], row["coins"], row["fee_coins"], row["diamonds"],
                    row["sent_at_us"], row["hold_reasons"])


def _facts(user_id: str, row: sqlite3.Row | None) -> AccountFacts:
    if row is None:
        return AccountFacts(user_id)
    return AccountFacts(user_id, row["follower_count"], bool(row["good_standing"]), row["restriction_reason"],
                        row["category"], bool(row["identity_verified"]), row["joined_at_us"])


def _json(value: object) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


class SqliteUnitOfWork:
    """One unit of work inside a group-commit batch: the store side of every use-case protocol.

    `trace_id` is the trace of the request the unit serves, stamped on its audit events;
    `touched_lives` collects the LIVE sessions whose feed or state changed, for the
    listeners told after the commit (a rolled-back unit only causes a spurious wake-up).
    """

    def __init__(self, tx: Transaction, *, trace_id: str = "", touched_lives: set[str] | None = None) -> None:
        self._tx = tx
        self._trace_id = trace_id
        self._touched_lives = touched_lives if touched_lives is not None else set()
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
        self._touched_lives.add(live_id)
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
            "INSERT OR REPLACE INTO account_facts (user_id, follower_count, good_standing, restriction_reason, "
            "category, identity_verified, joined_at_us, updated_at_us, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (facts.user_id, facts.follower_count, int(facts.good_standing), facts.restriction_reason,
             str(facts.category), int(facts.identity_verified), facts.joined_at_us, now_us, updated_by))

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
            "INSERT INTO gift (gift_id, request_id, live_id, sender, creator, catalog_gift, count, coins, fee_coins, "
            "diamonds, sent_at_us, hold_reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (gift.gift_id, gift.request_id, gift.live_id, gift.sender, gift.creator, gift.catalog_gift, gift.count,
             gift.coins, gift.fee_coins, gift.diamonds, gift.sent_at_us, gift.hold_reasons))

    def gift(self, gift_id: str) -> SentGift | None:
        row = self._tx.execute("SELECT * FROM gift WHERE gift_id = ?", (gift_id,)).fetchone()
        return _gift(row) if row else None

    def append_to_feed(self, gift: SentGift, now_us: int) -> int:
        self._touched_lives.add(gift.live_id)
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
            "INSERT INTO payout (payout_id, request_id, user_id, eur_cents, diamonds, payout_method, requested_at_us, "
            "expires_at_us, diamonds_transfer_id, cash_transfer_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (payout.payout_id, payout.request_id, payout.user_id, payout.eur_cents, payout.diamonds,
             payout.payout_method, payout.requested_at_us, payout.expires_at_us, diamonds_transfer, cash_transfer))

    def payout(self, payout_id: str) -> Payout | None:
        return _find_payout(self._tx, payout_id)

    def insert_payout_settlement(self, settlement: PayoutSettlement) -> None:
        self._tx.execute(
            "INSERT INTO payout_settlement (payout_id, request_id, paid, provider_reference, failure_reason, "
            "settled_at_us) VALUES (?, ?, ?, ?, ?, ?)",
            (settlement.payout_id, settlement.request_id, int(settlement.paid), settlement.provider_reference,
             settlement.failure_reason, settlement.settled_at_us))

    def payout_settlement(self, payout_id: str) -> PayoutSettlement | None:
        return _find_payout_settlement(self._tx, payout_id)

    def payout_resolution(self, payout: Payout) -> tuple[Phase, int] | None:
        return _find_payout_resolution(self._tx, payout)

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
                         (_json(_audit_fields(event, transfers, self._trace_id)),))


class _Executor(Protocol):
    """A write transaction or a read snapshot: both run the shared lookups below."""

    def execute(self, sql: str, parameters: Sequence[object] = ...) -> sqlite3.Cursor: ...


def _payout(row: sqlite3.Row) -> Payout:
    return Payout(row["payout_id"], row["request_id"], row["user_id"], row["eur_cents"], row["diamonds"],
                  row["payout_method"], row["requested_at_us"], row["expires_at_us"],
                  (row["diamonds_transfer_id"], row["cash_transfer_id"]))


def _find_payout(executor: _Executor, payout_id: str) -> Payout | None:
    row = executor.execute("SELECT * FROM payout WHERE payout_id = ?", (payout_id,)).fetchone()
    return _payout(row) if row else None


def _find_payout_settlement(executor: _Executor, payout_id: str) -> PayoutSettlement | None:
    row = executor.execute("SELECT * FROM payout_settlement WHERE payout_id = ?", (payout_id,)).fetchone()
    if row is None:
        return None
    return PayoutSettlement(row["payout_id"], row["request_id"], bool(row["paid"]), row["provider_reference"],
                            row["failure_reason"], row["settled_at_us"])


def _find_payout_resolution(executor: _Executor, payout: Payout) -> tuple[Phase, int] | None:
    row = executor.execute("SELECT phase, created_at_us FROM transfer WHERE pending_id = ?",
                           (payout.pending_transfer_ids[1],)).fetchone()
    return (Phase(row[0]), row[1]) if row else None


def _audit_fields(event: AuditEvent, transfers: tuple[int, ...], trace_id: str) -> dict[str, Any]:
    return {"action": event.action, "actor": event.actor, "outcome": event.outcome.value,
            "request_id": event.request_id, "resource": event.resource, "occurred_at_us": event.occurred_at_us,
            "reason": event.reason, "details": event.details, "transfer_ids": list(event.transfer_ids + transfers),
            "trace_id": event.trace_id or trace_id}


def _audit_event(fields: dict[str, Any]) -> AuditEvent:
    return AuditEvent(fields["action"], fields["actor"], Outcome(fields["outcome"]), fields["request_id"],
                      fields["resource"], fields["occurred_at_us"], fields["reason"], fields["details"],
                      tuple(fields["transfer_ids"]), fields["trace_id"])


class _ReadPayouts:
    """The payout lookups `current_payout` needs, over a read snapshot."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def payout_settlement(self, payout_id: str) -> PayoutSettlement | None:
        return _find_payout_settlement(self._connection, payout_id)

    def payout_resolution(self, payout: Payout) -> tuple[Phase, int] | None:
        return _find_payout_resolution(self._connection, payout)


class GiftsReader:
    """The read side: wallets, statements, sessions, the feed, leaderboards, payouts, the outbox.

    Reads run on their own connection, which WAL lets run beside the writer (in this process
    or in the ledger process).
    """

    def __init__(self, path: Path, *, synchronous: str = "FULL") -> None:
        self.reader = SqliteDatabase(path, synchronous=synchronous)

    @classmethod
    def of_service(cls, root: Path | None = None) -> GiftsReader:
        return cls(database_path(root))

    def close(self) -> None:
        self.reader.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self.reader.reading() as connection:
            yield connection

    # Read side -----------------------------------------------------------------------------

    def wallet(self, user_id: str) -> Wallet:
        purposes = {Account.of_user(user_id, purpose).name: purpose for purpose in _WALLET_PURPOSES}
        marks = ",".join("?" * len(purposes))
        with self._read() as connection:
            rows = connection.execute(f"SELECT * FROM account WHERE name IN ({marks})", tuple(purposes)).fetchall()
            latest = connection.execute(
                f"SELECT MAX(created_at_us) FROM (SELECT MAX(created_at_us) AS created_at_us FROM transfer "
                f"WHERE debit_account IN ({marks}) UNION ALL SELECT MAX(created_at_us) FROM transfer "
                f"WHERE credit_account IN ({marks}))", (*purposes, *purposes)).fetchone()[0]
        return Wallet(user_id, {purposes[row["name"]]: _balance(row) for row in rows}, latest or 0)

    def statement(self, user_id: str, *, before_id: int | None, limit: int, codes: frozenset[Code] | None = None,
                  purposes: frozenset[Purpose] = _WALLET_PURPOSES, request_id: str | None = None
                  ) -> list[StatementLine]:
        """The wallet's entries, newest first, strictly before `before_id`.

        A pending entry appears once, with how it was resolved; the resolving rows are left out.
        """
        names = tuple(Account.of_user(user_id, purpose).name for purpose in purposes)
        marks = ",".join("?" * len(names))
        code_filter, code_values = "", tuple[str, ...]()
        if codes is not None:
            code_filter = f"AND transfer.code IN ({','.join('?' * len(codes))})"
            code_values = tuple(code.value for code in codes)
        if request_id is not None:
            code_filter += " AND transfer.request_id = ?"
            code_values += (request_id,)
        with self._read() as connection:
            rows = connection.execute(
                f"SELECT {_ENTRY_COLUMNS}, resolution.phase AS resolution, gift.live_id AS live_id, "
                "gift.creator AS creator, payout.payout_id AS payout_id FROM transfer "
                "LEFT JOIN transfer AS resolution ON resolution.pending_id = transfer.id "
                "LEFT JOIN gift ON gift.gift_id = transfer.gift_id "
                "LEFT JOIN payout ON payout.request_id = transfer.request_id AND transfer.code = 'PAYOUT_DIAMONDS' "
                f"WHERE transfer.id < ? AND transfer.pending_id IS NULL {code_filter} "
                f"AND (transfer.debit_account IN ({marks}) OR transfer.credit_account IN ({marks})) "
                "ORDER BY transfer.id DESC LIMIT ?",
                (before_id if before_id is not None else 2**63 - 1, *code_values, *names, *names, limit)).fetchall()
        return [StatementLine(_entry(row), Phase(row["resolution"]) if row["resolution"] else None, row["live_id"],
                              row["creator"], row["payout_id"]) for row in rows]

    def request_statement(self, user_id: str, request_id: str) -> list[StatementLine]:
        """The wallet's entries written by one request, oldest first."""
        return sorted((line for line in self.statement(user_id, before_id=None, limit=MAX_REQUEST_ENTRIES,
                                                        request_id=request_id)),
                      key=lambda line: line.entry.transfer_id)

    def top_up_of_entry(self, user_id: str, transfer_id: int) -> str | None:
        """The top-up whose coin credit is this wallet entry."""
        with self._read() as connection:
            row = connection.execute(
                "SELECT top_up.top_up_id FROM transfer JOIN top_up ON top_up.request_id = transfer.request_id "
                "WHERE transfer.id = ? AND transfer.code = 'TOP_UP_COINS' AND top_up.user_id = ?",
                (transfer_id, user_id)).fetchone()
        return row[0] if row else None

    def live(self, live_id: str) -> LiveSession | None:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM live_session WHERE live_id = ?", (live_id,)).fetchone()
        return _live(row) if row else None

    def live_summary(self, live_id: str) -> LiveSummary | None:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM live_session WHERE live_id = ?", (live_id,)).fetchone()
            if row is None:
                return None
            gifts, diamonds = connection.execute(
                "SELECT COUNT(DISTINCT CASE WHEN t.code = 'GIFT_DIAMONDS' THEN g.gift_id END) "
                "  - COUNT(DISTINCT CASE WHEN t.code = 'GIFT_DIAMONDS_REVERSAL' THEN g.gift_id END), "
                "COALESCE(SUM(CASE t.code WHEN 'GIFT_DIAMONDS' THEN t.amount ELSE -t.amount END), 0) "
                "FROM gift AS g JOIN transfer AS t ON t.gift_id = g.gift_id WHERE g.live_id = ? "
                "AND t.phase IN ('POSTED', 'POST_PENDING') AND t.code IN ('GIFT_DIAMONDS', 'GIFT_DIAMONDS_REVERSAL')",
                (live_id,)).fetchone()
        return LiveSummary(_live(row), gifts, diamonds)

    def lives(self, *, host: str | None, before_live_id: str | None, limit: int, state: LiveState | None = None,
              now_us: int = 0) -> list[LiveSession]:
        """Sessions newest first (live ids are time-ordered), of one host or of all."""
        filters, parameters = ["live_id < ?"], list[object]([before_live_id or "~"])
        if host is not None:
            filters.append("host = ?")
            parameters.append(host)
        if state is LiveState.LIVE:
            filters.append("ended_at_us IS NULL AND deadline_us > ?")
            parameters.append(now_us)
        elif state is LiveState.ENDED:
            filters.append("(ended_at_us IS NOT NULL OR deadline_us <= ?)")
            parameters.append(now_us)
        with self._read() as connection:
            rows = connection.execute(f"SELECT * FROM live_session WHERE {' AND '.join(filters)} "
                                      "ORDER BY live_id DESC LIMIT ?", (*parameters, limit)).fetchall()
        return [_live(row) for row in rows]

    def feed(self, live_id: str, *, after_sequence: int, limit: int) -> list[FeedItem]:
        with self._read() as connection:
            rows = connection.execute(
                "SELECT f.sequence, f.posted_at_us, g.* FROM gift_feed AS f JOIN gift AS g USING (gift_id) "
                "WHERE f.live_id = ? AND f.sequence > ? ORDER BY f.sequence LIMIT ?",
                (live_id, after_sequence, limit)).fetchall()
        return [FeedItem(row["sequence"], row["posted_at_us"], _gift(row)) for row in rows]

    def leaderboard(self, *, party: Party, limit: int, offset: int = 0, live_id: str | None = None,
                    creator: str | None = None, since_us: int | None = None,
                    until_us: int | None = None) -> list[LeaderboardEntry]:
        """Gifters by coins given, or creators by diamonds earned, from the gift legs of the
        ledger minus their reversals. Ties share a rank.

        Held gifts count once posted; voided and expired ones never post, so never count.
        """
        legs: tuple[Code, ...]
        if party is Party.GIFTER:
            column, legs = "g.sender", (Code.GIFT_FEE, Code.GIFT_SHARE)
        else:
            column, legs = "g.creator", (Code.GIFT_DIAMONDS,)
        reversals = tuple(GIFT_REVERSAL_CODES[leg] for leg in legs)
        filters, parameters = ["1 = 1"], []
        for clause, value in (("g.live_id = ?", live_id), ("g.creator = ?", creator),
                              ("g.sent_at_us >= ?", since_us), ("g.sent_at_us < ?", until_us)):
            if value is not None:
                filters.append(clause)
                parameters.append(value)
        codes = ",".join(f"'{code.value}'" for code in legs + reversals)
        credits = ",".join(f"'{code.value}'" for code in legs)
        with self._read() as connection:
            rows = connection.execute(
                f"SELECT party, net, RANK() OVER (ORDER BY net DESC) AS rank FROM ("
                f"  SELECT {column} AS party, SUM(CASE WHEN t.code IN ({credits}) THEN t.amount ELSE -t.amount END)"
                "   AS net FROM gift AS g JOIN transfer AS t ON t.gift_id = g.gift_id "
                f"  WHERE t.phase IN ('POSTED', 'POST_PENDING') AND t.code IN ({codes}) AND {' AND '.join(filters)} "
                "   GROUP BY party HAVING net > 0"
                ") ORDER BY net DESC, party LIMIT ? OFFSET ?", (*parameters, limit, offset)).fetchall()
        return [LeaderboardEntry(row["rank"], row["party"], row["net"]) for row in rows]

    def payouts(self, user_id: str, *, before_payout_id: str | None, limit: int,
                state: PayoutState | None = None) -> list[PayoutResult]:
        """The user's payouts, newest first (payout ids are time-ordered), optionally in one state."""
        resolved = ("SELECT phase FROM transfer AS r WHERE r.pending_id = payout.cash_transfer_id")
        state_filter = {None: "", PayoutState.PENDING: f"AND NOT EXISTS ({resolved})",
                        PayoutState.POSTED: f"AND 'POST_PENDING' IN ({resolved})",
                        PayoutState.VOIDED: f"AND ({resolved}) IN ('VOID_PENDING', 'EXPIRE_PENDING')"}[state]
        with self._read() as connection:
            rows = connection.execute(f"SELECT * FROM payout WHERE user_id = ? AND payout_id < ? {state_filter} "
                                      "ORDER BY payout_id DESC LIMIT ?",
                                      (user_id, before_payout_id or "~", limit)).fetchall()
            outcomes = _ReadPayouts(connection)
            return [current_payout(outcomes, _payout(row)) for row in rows]

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

    def payout(self, payout_id: str) -> PayoutResult | None:
        with self._read() as connection:
            payout = _find_payout(connection, payout_id)
            return None if payout is None else current_payout(_ReadPayouts(connection), payout)

    def account_standing(self, user_id: str) -> AccountStanding:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM account_facts WHERE user_id = ?", (user_id,)).fetchone()
        if row is None:
            return AccountStanding(_facts(user_id, None), 0, "")
        return AccountStanding(_facts(user_id, row), row["updated_at_us"], row["updated_by"])

    # The audit outbox, for `AuditRelay` -----------------------------------------------------

    def audit_events_after(self, sequence: int, limit: int) -> list[RecordedAuditEvent]:
        with self._read() as connection:
            rows = connection.execute("SELECT sequence, event FROM audit_outbox WHERE sequence > ? "
                                      "ORDER BY sequence LIMIT ?", (sequence, limit)).fetchall()
        return [RecordedAuditEvent(row[0], _audit_event(json.loads(row[1]))) for row in rows]

    def audit_log_id(self) -> str:
        """The outbox's own random name, fixed when the database was created."""
        with self._read() as connection:
            return str(connection.execute("SELECT log_id FROM audit_delivery").fetchone()[0])

    def audit_delivered_through(self) -> int:
        with self._read() as connection:
            return int(connection.execute("SELECT delivered_through FROM audit_delivery").fetchone()[0])

    def mark_audit_delivered(self, sequence: int) -> None:
        # The shipper's own bookmark, not ledger data: a tiny write beside the ledger's writer,
        # which SQLite serialises with it (the writer holds the lock only while committing).
        with self.reader.transaction() as tx:
            tx.execute("UPDATE audit_delivery SET delivered_through = MAX(delivered_through, ?)", (sequence,))

    def set_audit_event_aside(self, sequence: int, error: str) -> None:
        """Compliance refused this event for good: keep it aside with why, and go past it."""
        with self.reader.transaction() as tx:
            tx.execute("INSERT OR IGNORE INTO audit_set_aside (sequence, error) VALUES (?, ?)", (sequence, error))
            tx.execute("UPDATE audit_delivery SET delivered_through = MAX(delivered_through, ?)", (sequence,))


class GiftsStore(GiftsReader):
    """Owns the gifts database: the group-committing writer, and a reader beside it.

    One process at a time owns the writer (it migrates the schema on opening); any number
    of `GiftsReader`s may read beside it.
    """

    def __init__(self, *, root: Path | None = None, synchronous: str = "FULL",
                 max_batch: int = DEFAULT_MAX_BATCH, threaded: bool = True) -> None:
        writer = open_service_database(SERVICE, MIGRATIONS, synchronous=synchronous, root=root)
        self._writer = writer
        super().__init__(writer.path, synchronous=synchronous)
        with writer.transaction() as tx:
            # The hot set (platform accounts, recent index pages) must stay in memory.
            tx.execute(f"PRAGMA cache_size = -{WRITER_CACHE_KIB}")
            for account in PLATFORM_ACCOUNTS:
                SqliteUnitOfWork(tx).open_account(account, 0)
        self._committer = UnitCommitter(writer, max_batch=max_batch, name="gifts-commit", threaded=threaded)
        # Written only on the committer thread: by units, then swapped out after each commit.
        self._touched_lives: set[str] = set()
        self._live_listeners: list[Callable[[frozenset[str]], None]] = []
        self._committer.add_commit_listener(self._tell_live_listeners)

    def submit(self, work: Callable[[GiftsUnitOfWork], R], *,
               on_refused: Callable[[GiftsUnitOfWork, DomainError], None] | None = None,
               trace_id: str = "") -> Future[R]:
        """Run `work` in the next durable batch; the future resolves after its COMMIT."""
        unit, refused = self._units(on_refused, trace_id)
        return self._committer.submit(lambda tx: work(unit(tx)), on_refused=refused)

    def _units(self, on_refused: Callable[[GiftsUnitOfWork, DomainError], None] | None, trace_id: str
               ) -> tuple[Callable[[Transaction], SqliteUnitOfWork], RefusalRecorder | None]:
        def unit(tx: Transaction) -> SqliteUnitOfWork:
            return SqliteUnitOfWork(tx, trace_id=trace_id, touched_lives=self._touched_lives)

        refused = None if on_refused is None else (lambda tx, error: on_refused(unit(tx), error))
        return unit, refused

    async def run(self, work: Callable[[GiftsUnitOfWork], R], *,
                  on_refused: Callable[[GiftsUnitOfWork, DomainError], None] | None = None,
                  trace_id: str = "") -> R:
        """`submit` for asyncio callers, woken together with the rest of their batch."""
        unit, refused = self._units(on_refused, trace_id)
        return await self._committer.run(lambda tx: work(unit(tx)), on_refused=refused)

    def commit_queued(self) -> None:
        """With `threaded=False`: commit what was submitted, on this thread."""
        self._committer.commit_queued()

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` on the committer thread after each commit, before anyone hears of it."""
        self._committer.add_commit_listener(listener)

    def add_live_listener(self, listener: Callable[[frozenset[str]], None]) -> None:
        """Call `listener(live_ids)` on the committer thread after a commit that added gifts
        to, or ended, those LIVE sessions. It must be quick and thread-safe."""
        self._live_listeners.append(listener)

    def _tell_live_listeners(self) -> None:
        if not self._touched_lives:
            return
        touched = frozenset(self._touched_lives)
        self._touched_lives.clear()
        for listener in self._live_listeners:
            listener(touched)

    def close(self) -> None:
        self._committer.close()
        self._writer.close()
        super().close()
