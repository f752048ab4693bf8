"""The schema enforces the ledger invariants on its own, and group commit keeps them under load.

Every test here runs on both engines (`database_engine`): the invariants live in each
engine's schema (SQLite triggers, PostgreSQL's PL/pgSQL), not in the store's Python.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from libs.errors import DomainError, FailedPrecondition
from libs.storage.database import Database, IntegrityError, open_database
from services.gifts.config import GiftsConfig
from services.gifts.conftest import ON_BOTH_ENGINES, Harness, adult, build_harness
from services.gifts.model.fraud import FraudPolicy
from services.gifts.model.ledger import Account, Code, Phase, Purpose, TransferOrder
from services.gifts.store.schema import MIGRATIONS, SERVICE, database_path
from services.gifts.store.unit import LedgerUnitOfWork
from services.gifts.usecases.commands import GiftResult, SendGift

pytestmark = ON_BOTH_ENGINES

UNLIMITED = GiftsConfig(fraud=FraudPolicy(max_gifts_per_window=10**6, new_account_large_coins=10**9))


class Raw:
    """A second, hand-driven handle on the ledger's database: what any buggy code path could
    do to it. Each statement is a write transaction of its own."""

    def __init__(self, database: Database) -> None:
        self.database = database

    def execute(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """The statement's rows (a SELECT's, or an INSERT's RETURNING), committed."""
        returns_rows = sql.startswith("SELECT") or " RETURNING " in sql
        with self.database.transaction() as tx:
            cursor = tx.execute(sql, parameters)
            return [tuple(row) for row in cursor.fetchall()] if returns_rows else []


@pytest.fixture
def raw(harness: Harness, tmp_path: Path, database_engine: str) -> Iterator[Raw]:
    harness.go_live("carol")
    harness.top_up("alice", "coins-100")
    database = open_database(SERVICE, MIGRATIONS, root=tmp_path)
    assert database.engine == harness.reader.database.engine == database_engine
    connection = Raw(database)
    connection.execute("INSERT INTO request VALUES ('hand', 'Hand', 'users/ops', '{}', 0)")
    yield connection
    database.close()


def _transfer(connection: Raw, debit: str, credit: str, amount: object, *, currency: str = "COIN",
              phase: str = "POSTED", pending_id: int | None = None, timeout_us: int | None = None,
              at_us: int = 1) -> int:
    (row,) = connection.execute(
        "INSERT INTO transfer (request_id, code, phase, debit_account, credit_account, currency, amount, pending_id, "
        "timeout_us, created_at_us) VALUES ('hand', 'GIFT_FEE', ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        (phase, debit, credit, currency, amount, pending_id, timeout_us, at_us))
    return int(row[0])


ALICE = "users/alice/accounts/coins"
FEES = "platform/accounts/gift-fees"


def test_the_schema_refuses_an_overdraft(raw: Raw) -> None:
    with pytest.raises(IntegrityError, match="account_would_go_negative"):
        _transfer(raw, ALICE, FEES, 101)
    _transfer(raw, ALICE, FEES, 100)
    assert raw.execute("SELECT credits_posted - debits_posted FROM account WHERE name = ?", (ALICE,)) == [(0,)]


def test_pending_debits_reserve_funds(raw: Raw) -> None:
    _transfer(raw, ALICE, FEES, 60, phase="PENDING", timeout_us=10)
    with pytest.raises(IntegrityError, match="account_would_go_negative"):
        _transfer(raw, ALICE, FEES, 41)


@pytest.mark.parametrize("amount", [0, -5, 10**16])
def test_amounts_are_positive_and_bounded(raw: Raw, amount: object) -> None:
    with pytest.raises(IntegrityError):
        _transfer(raw, ALICE, FEES, amount)


@pytest.mark.parametrize("amount", [1.5, "ten"])
def test_amounts_are_integers(raw: Raw, database_engine: str, amount: object) -> None:
    if database_engine == "postgres":
        pytest.skip("PostgreSQL's BIGINT column is the type itself; SQLite needs its STRICT tables for this")
    with pytest.raises(IntegrityError):
        _transfer(raw, ALICE, FEES, amount)


def test_a_transfer_cannot_cross_currencies_or_touch_a_missing_account(raw: Raw) -> None:
    with pytest.raises(IntegrityError, match="(?i)FOREIGN KEY"):
        _transfer(raw, ALICE, "users/carol/accounts/diamonds-on-hold", 1)
    with pytest.raises(IntegrityError, match="(?i)FOREIGN KEY"):
        _transfer(raw, "users/nobody/accounts/coins", FEES, 1)


def test_entries_cannot_be_changed_or_removed(raw: Raw) -> None:
    transfer_id = _transfer(raw, ALICE, FEES, 1)
    for statement in ("UPDATE transfer SET amount = 2 WHERE id = ?", "DELETE FROM transfer WHERE id = ?"):
        with pytest.raises(IntegrityError, match="immutable|permanent"):
            raw.execute(statement, (transfer_id,))
    for table in ("request", "request_result", "audit_outbox", "top_up"):
        with pytest.raises(IntegrityError, match="permanent"):
            raw.execute(f"DELETE FROM {table}")


def test_entries_cannot_be_truncated_on_postgres(raw: Raw, database_engine: str) -> None:
    if database_engine != "postgres":
        pytest.skip("SQLite has no TRUNCATE (its DELETE is refused above)")
    for table in ("transfer", "request", "audit_outbox"):
        with pytest.raises(IntegrityError, match="permanent"):
            raw.execute(f"TRUNCATE {table} CASCADE")


def test_a_live_session_changes_only_by_ending_once(raw: Raw) -> None:
    ((live_id,),) = raw.execute("SELECT live_id FROM live_session WHERE host = 'carol'")
    with pytest.raises(IntegrityError, match="only changes by ending"):
        raw.execute("UPDATE live_session SET host = 'mallory' WHERE live_id = ?", (live_id,))
    raw.execute("UPDATE live_session SET ended_at_us = deadline_us, end_reason = 'HOST' WHERE live_id = ?", (live_id,))
    with pytest.raises(IntegrityError, match="only changes by ending"):
        raw.execute("UPDATE live_session SET end_reason = 'AGAIN' WHERE live_id = ?", (live_id,))


def test_a_session_feed_is_numbered_without_gaps(harness: Harness, raw: Raw) -> None:
    ((live_id,),) = raw.execute("SELECT live_id FROM live_session WHERE host = 'carol'")
    harness.run(SendGift(adult("alice"), str(uuid.uuid4()), live_id, "rose", 1))
    # A gift of the feed's own, so that only the numbering can refuse the rows below.
    raw.execute("INSERT INTO gift (gift_id, request_id, live_id, sender, creator, catalog_gift, count, coins, "
                "fee_coins, diamonds, sent_at_us, hold_reasons) VALUES ('x', 'hand', ?, 'alice', 'carol', 'rose', "
                "1, 1, 0, 0, 0, '')", (live_id,))
    for wrong, why in ((1, "without gaps"), (3, "without gaps"), (0, "without gaps")):
        with pytest.raises(IntegrityError, match=why):
            raw.execute("INSERT INTO gift_feed (live_id, live_sequence, gift_id, posted_at_us) VALUES (?, ?, 'x', 0)",
                        (live_id, wrong))
    raw.execute("INSERT INTO gift_feed (live_id, live_sequence, gift_id, posted_at_us) VALUES (?, 2, 'x', 0)",
                (live_id,))


def test_a_pending_transfer_resolves_once_exactly_as_it_was(raw: Raw) -> None:
    pending = _transfer(raw, ALICE, FEES, 30, phase="PENDING", timeout_us=100)
    with pytest.raises(IntegrityError, match="repeat its pending"):
        _transfer(raw, ALICE, FEES, 31, phase="POST_PENDING", pending_id=pending, at_us=5)
    _transfer(raw, ALICE, FEES, 30, phase="POST_PENDING", pending_id=pending, at_us=5)
    with pytest.raises(IntegrityError, match="(?i)UNIQUE"):
        _transfer(raw, ALICE, FEES, 30, phase="VOID_PENDING", pending_id=pending, at_us=6)
    assert raw.execute("SELECT debits_posted, debits_pending FROM account WHERE name = ?", (ALICE,)) == [(30, 0)]


def test_a_pending_transfer_cannot_post_after_its_timeout_nor_expire_before_it(raw: Raw) -> None:
    pending = _transfer(raw, ALICE, FEES, 30, phase="PENDING", timeout_us=100)
    with pytest.raises(IntegrityError, match="timeout"):
        _transfer(raw, ALICE, FEES, 30, phase="EXPIRE_PENDING", pending_id=pending, at_us=99)
    with pytest.raises(IntegrityError, match="timeout"):
        _transfer(raw, ALICE, FEES, 30, phase="POST_PENDING", pending_id=pending, at_us=100)
    _transfer(raw, ALICE, FEES, 30, phase="EXPIRE_PENDING", pending_id=pending, at_us=100)
    assert raw.execute("SELECT COUNT(*) FROM pending_open") == [(0,)]


# Concurrency ---------------------------------------------------------------------------------


def _send(h: Harness, live_id: str, request_id: str | None = None, gift: str = "doughnut") -> GiftResult | str:
    command = SendGift(adult("alice"), request_id or str(uuid.uuid4()), live_id, gift, 1)
    try:
        return h.submit(command).result(timeout=60)
    except DomainError as error:
        return error.reason


def test_64_threads_gifting_from_one_wallet_never_overdraw_it(tmp_path: Path) -> None:
    h = build_harness(tmp_path, UNLIMITED, synchronous="FULL")
    live_id = h.go_live("carol").live_id
    h.top_up("alice", "coins-1000")  # 33 doughnuts of 30 coins, and 10 coins left over
    start = threading.Barrier(64)

    def gift_repeatedly(_: int) -> list[GiftResult | str]:
        start.wait()
        return [_send(h, live_id) for _ in range(2)]

    with ThreadPoolExecutor(64) as pool:
        outcomes = [outcome for batch in pool.map(gift_repeatedly, range(64)) for outcome in batch]
    sent = [outcome for outcome in outcomes if isinstance(outcome, GiftResult)]
    assert len(sent) == 33
    assert Counter(outcome for outcome in outcomes if isinstance(outcome, str)) == {"INSUFFICIENT_COINS": 128 - 33}
    assert h.reader.wallet("alice").available(Purpose.COINS) == 10
    assert h.reader.wallet("carol").available(Purpose.DIAMONDS_ON_HOLD) == 33 * 30
    assert sorted(result.coins_available for result in sent) == list(range(10, 1000, 30))
    h.close()


def test_one_request_id_sent_by_64_threads_at_once_takes_effect_once(tmp_path: Path) -> None:
    h = build_harness(tmp_path, UNLIMITED)
    live_id = h.go_live("carol").live_id
    h.top_up("alice", "coins-1000")
    request_id = str(uuid.uuid4())
    start = threading.Barrier(64)

    def send_same(_: int) -> GiftResult | str:
        start.wait()
        return _send(h, live_id, request_id)

    with ThreadPoolExecutor(64) as pool:
        outcomes = list(pool.map(send_same, range(64)))
    assert len(set(outcomes)) == 1 and isinstance(outcomes[0], GiftResult)
    assert h.reader.wallet("alice").available(Purpose.COINS) == 970
    h.close()


def test_the_reader_cannot_write(harness: Harness) -> None:
    with harness.reader.database.reading() as connection, \
            pytest.raises(Exception, match="readonly|read-only") as refused:
        connection.execute("INSERT INTO request VALUES ('r', 'Op', 'users/ops', '{}', 0)")
    assert not isinstance(refused.value, IntegrityError)  # refused as a write, not by a constraint



def test_the_migration_numbers_an_existing_feed_per_session_in_its_order(tmp_path: Path, database_engine: str) -> None:
    if database_engine == "postgres":
        pytest.skip("no PostgreSQL store was ever at schema 2 with a feed to number")
    old = open_database(SERVICE, MIGRATIONS[:2], root=tmp_path)
    old.close()
    path = database_path(tmp_path)
    with sqlite3.connect(path) as connection:  # feed rows of two LIVEs, numbered by the old shared counter
        connection.executemany("INSERT INTO gift_feed (sequence, live_id, gift_id, posted_at_us) VALUES (?, ?, ?, 0)",
                               [(10 * number, live, f"g{number}") for number, live in enumerate("abaab", start=1)])
    connection.close()
    harness = build_harness(tmp_path)  # opening the writer migrates
    try:
        with harness.reader.database.reading() as reading:
            numbered = [tuple(row) for row in reading.execute(
                "SELECT live_id, live_sequence, gift_id FROM gift_feed ORDER BY sequence")]
        assert numbered == [("a", 1, "g1"), ("b", 1, "g2"), ("a", 2, "g3"), ("a", 3, "g4"), ("b", 2, "g5")]
    finally:
        harness.close()


def test_a_pending_transfer_resolved_twice_in_one_unit_is_refused_by_its_unique_index(harness: Harness) -> None:
    """The store's own guard (the use cases look first): the second resolution meets
    `transfer_resolves_pending_once`, on either engine, and the unit leaves nothing behind."""
    harness.top_up("alice", "coins-100")
    coins, fees = Account.of_user("alice", Purpose.COINS), Account.platform(Purpose.GIFT_FEES)

    def resolve_twice(uow: LedgerUnitOfWork) -> None:
        now = harness.clock()
        uow.claim_request("twice", "Hand", "users/ops", {}, now)
        (pending,) = uow.pend("twice", [TransferOrder(coins, fees, 30, Code.GIFT_FEE)], now, now + dt.timedelta(hours=1))
        uow.resolve("twice", [pending], Phase.VOID_PENDING, now)
        uow.resolve("twice", [pending], Phase.VOID_PENDING, now)

    with pytest.raises(FailedPrecondition) as refused:
        harness.runner.store.submit(resolve_twice).result()
    assert refused.value.reason == "PENDING_ALREADY_RESOLVED"
    assert harness.reader.wallet("alice").available(Purpose.COINS) == 100
