"""The ledger's writes: one unit of work of a group-commit batch, over its transaction."""

from __future__ import annotations

import datetime as dt
import functools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from libs.audit.outbox import write_event
from libs.errors import FailedPrecondition
from libs.storage.database import IntegrityError, Transaction
from libs.timestamps import epoch_us, from_epoch_us
from services.gifts.audit_events import PlatformEvents
from services.gifts.model.audit import NO_TRACE, AuditEvent, Trace
from services.gifts.model.eligibility import AccountFacts
from services.gifts.model.idempotency import Parameters, RequestRecord
from services.gifts.model.ledger import Account, Balance, Entry, InsufficientFunds, Phase, Purpose, TransferOrder
from services.gifts.model.live import LiveAlreadyOpen, LiveSession
from services.gifts.model.records import Payout, PayoutSettlement, SentGift, TopUp
from services.gifts.store import rows


class LedgerUnitOfWork:
    """One unit of work inside a group-commit batch: the store side of every use case's unit
    (`usecases.LedgerUnit`).

    `events` turns its audit events into the platform's; `trace` is the call the unit serves,
    stamped on them; `touched_lives` collects the LIVE sessions whose feed or state changed,
    for the listeners told after the commit (a rolled-back unit only causes a spurious wake-up).
    `engine` is the database's: on PostgreSQL a failed statement aborts the transaction, so a
    statement whose refusal the unit reads on from runs inside a savepoint of its own there.
    """

    def __init__(self, tx: Transaction, *, events: PlatformEvents, trace: Trace = NO_TRACE,
                 touched_lives: set[str] | None = None, engine: str = "sqlite") -> None:
        self._tx = tx
        self._failed_statement_aborts = engine == "postgres"
        self._events = events
        self._trace = trace
        self._touched_lives = touched_lives if touched_lives is not None else set()
        self._unaudited_transfers: list[int] = []

    @contextmanager
    def _may_fail(self) -> Iterator[None]:
        """A statement the unit carries on after when it fails (SQLite undoes just that
        statement; PostgreSQL needs a savepoint to)."""
        if not self._failed_statement_aborts:
            yield
            return
        self._tx.execute("SAVEPOINT statement")
        try:
            yield
        except IntegrityError:
            self._tx.execute("ROLLBACK TO statement")
            self._tx.execute("RELEASE statement")
            raise
        self._tx.execute("RELEASE statement")

    # Ledger

    def open_account(self, account: Account, now: dt.datetime) -> None:
        self._tx.execute(
            "INSERT INTO account (name, currency, may_go_negative, opened_at_us) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO NOTHING",
            (account.name, account.currency.value, int(account.may_go_negative), epoch_us(now)))

    def post(self, request_id: str, orders: list[TransferOrder], now: dt.datetime) -> list[int]:
        return self._write_all(request_id, orders, Phase.POSTED, now, None)

    def pend(self, request_id: str, orders: list[TransferOrder], now: dt.datetime, timeout: dt.datetime) -> list[int]:
        return self._write_all(request_id, orders, Phase.PENDING, now, timeout)

    def _write_all(self, request_id: str, orders: list[TransferOrder], phase: Phase, now: dt.datetime,
                   timeout: dt.datetime | None) -> list[int]:
        """One INSERT for the whole set (a gift's legs cost one statement, not three); the
        triggers and CHECKs judge every row as before."""
        timeout_us, created_at_us = rows.epoch_us_or_none(timeout), epoch_us(now)
        parameters = [value for order in orders
                      for value in (request_id, order.code.value, phase.value, order.debit.name, order.credit.name,
                                    order.currency.value, order.amount, timeout_us, order.gift_id, created_at_us)]
        try:
            with self._may_fail():
                found = self._tx.execute(_insert_transfers(len(orders)), parameters).fetchall()
        except IntegrityError as error:
            if "account_would_go_negative" not in str(error):
                raise
            # The statement left nothing behind: find the leg that overdraws, one at a time, to
            # report its account's demand.
            return self._write_one_by_one(request_id, orders, phase, now, timeout)
        # Rowids are handed out in VALUES order; RETURNING promises no order.
        written = sorted(int(row[0]) for row in found)
        self._unaudited_transfers.extend(written)
        return written

    def _write_one_by_one(self, request_id: str, orders: list[TransferOrder], phase: Phase, now: dt.datetime,
                          timeout: dt.datetime | None) -> list[int]:
        written: list[int] = []
        for order in orders:
            try:
                with self._may_fail():
                    row = self._tx.execute(
                        _insert_transfers(1),
                        (request_id, order.code.value, phase.value, order.debit.name, order.credit.name,
                         order.currency.value, order.amount, rows.epoch_us_or_none(timeout), order.gift_id,
                         epoch_us(now))).fetchone()
            except IntegrityError as error:
                if "account_would_go_negative" not in str(error):
                    raise
                # Report the whole set's demand on the account, against what it held before the set.
                debited_before = sum(o.amount for o in orders[:len(written)] if o.debit == order.debit)
                balance = self.balance(order.debit)
                raise InsufficientFunds(
                    order.debit, available=(balance.available if balance else 0) + debited_before,
                    required=sum(o.amount for o in orders if o.debit == order.debit)) from None
            written.append(int(row[0]))
        self._unaudited_transfers.extend(written)
        return written

    def resolve(self, request_id: str, pending_ids: list[int], phase: Phase, now: dt.datetime) -> None:
        for pending_id in pending_ids:
            try:
                row = self._tx.execute(
                    "INSERT INTO transfer (request_id, code, phase, debit_account, credit_account, currency, "
                    "amount, pending_id, gift_id, created_at_us) "
                    "SELECT ?, code, ?, debit_account, credit_account, currency, amount, id, gift_id, ? "
                    "FROM transfer WHERE id = ? AND phase = 'PENDING' RETURNING id",
                    (request_id, phase.value, epoch_us(now), pending_id)).fetchone()
            except IntegrityError as error:  # the unit ends here: the committer rolls it back
                if not _violates(error, "transfer.pending_id", "transfer_resolves_pending_once"):
                    raise
                raise FailedPrecondition("the pending transfer was already resolved",
                                         reason="PENDING_ALREADY_RESOLVED",
                                         metadata={"transfer_id": str(pending_id)}) from None
            if row is None:
                raise ValueError(f"transfer {pending_id} is not a pending transfer")
            self._unaudited_transfers.append(int(row[0]))

    def balance(self, account: Account) -> Balance | None:
        row = self._tx.execute("SELECT * FROM account WHERE name = ?", (account.name,)).fetchone()
        return rows.balance_of(row) if row else None

    # Requests

    def claim_request(self, request_id: str, operation: str, caller: str, parameters: Parameters,
                      now: dt.datetime) -> RequestRecord | None:
        claimed = self._tx.execute(
            "INSERT INTO request (request_id, operation, caller, parameters, received_at_us) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (request_id) DO NOTHING",
            (request_id, operation, caller, rows.to_json(parameters), epoch_us(now))).rowcount
        if claimed:
            return None
        row = self._tx.execute(
            "SELECT r.operation, r.caller, r.parameters, x.result FROM request AS r "
            "LEFT JOIN request_result AS x USING (request_id) WHERE r.request_id = ?", (request_id,)).fetchone()
        return RequestRecord(request_id, row["operation"], row["caller"], json.loads(row["parameters"]),
                             rows.result_from_json(row["result"]) if row["result"] is not None else None)

    def record_result(self, request_id: str, result: dict[str, Any]) -> None:
        self._tx.execute("INSERT INTO request_result (request_id, result) VALUES (?, ?)",
                         (request_id, rows.result_to_json(result)))

    # LIVE sessions

    def insert_live(self, session: LiveSession) -> None:
        inserted = self._tx.execute(
            "INSERT INTO live_session (live_id, host, title, started_at_us, deadline_us, gifts_barred_reason) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (host) WHERE ended_at_us IS NULL DO NOTHING",
            (session.live_id, session.host, session.sealed_title, epoch_us(session.started_at), epoch_us(session.deadline),
             session.gifts_barred_reason)).rowcount
        if inserted != 1:  # the host's open session (one_open_live_per_host) kept its place
            open_live = self.open_live_of(session.host)
            raise LiveAlreadyOpen(session.host, open_live.live_id if open_live else "")

    def live(self, live_id: str) -> LiveSession | None:
        row = self._tx.execute("SELECT * FROM live_session WHERE live_id = ?", (live_id,)).fetchone()
        return rows.live_of(row) if row else None

    def open_live_of(self, host: str) -> LiveSession | None:
        row = self._tx.execute("SELECT * FROM live_session WHERE host = ? AND ended_at_us IS NULL",
                               (host,)).fetchone()
        return rows.live_of(row) if row else None

    def end_live(self, live_id: str, ended_at: dt.datetime, reason: str) -> bool:
        self._touched_lives.add(live_id)
        return self._tx.execute(
            "UPDATE live_session SET ended_at_us = ?, end_reason = ? WHERE live_id = ? AND ended_at_us IS NULL",
            (epoch_us(ended_at), reason, live_id)).rowcount == 1

    def overdue_lives(self, now: dt.datetime, limit: int) -> list[LiveSession]:
        found = self._tx.execute(
            "SELECT * FROM live_session WHERE ended_at_us IS NULL AND deadline_us <= ? ORDER BY deadline_us LIMIT ?",
            (epoch_us(now), limit))
        return [rows.live_of(row) for row in found]

    # Eligibility facts

    def account_facts(self, user_id: str) -> AccountFacts:
        row = self._tx.execute("SELECT * FROM account_facts WHERE user_id = ?", (user_id,)).fetchone()
        return rows.facts_of(user_id, row)

    def put_account_facts(self, facts: AccountFacts, *, updated_by: str, now: dt.datetime) -> None:
        self._tx.execute(
            "INSERT INTO account_facts (user_id, follower_count, good_standing, restriction_reason, "
            "category, identity_verified, joined_at_us, updated_at_us, updated_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (user_id) DO UPDATE SET follower_count = excluded.follower_count, "
            "good_standing = excluded.good_standing, restriction_reason = excluded.restriction_reason, "
            "category = excluded.category, identity_verified = excluded.identity_verified, "
            "joined_at_us = excluded.joined_at_us, updated_at_us = excluded.updated_at_us, "
            "updated_by = excluded.updated_by",
            (facts.user_id, facts.follower_count, int(facts.good_standing), facts.restriction_reason,
             str(facts.category), int(facts.identity_verified), rows.epoch_us_or_none(facts.joined_at), epoch_us(now), updated_by))

    def coins_account_opened_at(self, user_id: str) -> dt.datetime | None:
        row = self._tx.execute("SELECT opened_at_us FROM account WHERE name = ?",
                               (Account.of_user(user_id, Purpose.COINS).name,)).fetchone()
        return from_epoch_us(row[0]) if row else None

    # Gift history (fraud rules)

    def gifts_sent_since(self, sender: str, since: dt.datetime) -> tuple[int, int]:
        row = self._tx.execute("SELECT COUNT(*), CAST(COALESCE(SUM(coins), 0) AS BIGINT) FROM gift "
                               "WHERE sender = ? AND sent_at_us > ?", (sender, epoch_us(since))).fetchone()
        return int(row[0]), int(row[1])

    def gifting_path_exists(self, from_user: str, to_user: str, max_hops: int, since: dt.datetime) -> bool:
        row = self._tx.execute(
            "WITH RECURSIVE reached (user_id, hops) AS ("
            "  SELECT CAST(? AS TEXT), 0"
            "  UNION"
            "  SELECT gift.creator, reached.hops + 1 FROM reached JOIN gift ON gift.sender = reached.user_id"
            "  WHERE reached.hops < ? AND gift.sent_at_us > ?"
            ") SELECT 1 FROM reached WHERE user_id = ? AND hops > 0 LIMIT 1",
            (from_user, max_hops, epoch_us(since), to_user)).fetchone()
        return row is not None

    # Gifts

    def insert_gift(self, gift: SentGift) -> None:
        self._tx.execute(
            "INSERT INTO gift (gift_id, request_id, live_id, sender, creator, catalog_gift, count, coins, fee_coins, "
            "diamonds, sent_at_us, hold_reasons) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (gift.gift_id, gift.request_id, gift.live_id, gift.sender, gift.creator, gift.catalog_gift, gift.count,
             gift.coins, gift.fee_coins, gift.diamonds, epoch_us(gift.sent_at), gift.hold_reasons))

    def gift(self, gift_id: str) -> SentGift | None:
        row = self._tx.execute("SELECT * FROM gift WHERE gift_id = ?", (gift_id,)).fetchone()
        return rows.gift_of(row) if row else None

    def append_to_feed(self, gift: SentGift, now: dt.datetime) -> int:
        self._touched_lives.add(gift.live_id)
        # One writer numbers the feed, so the session's last number plus one is free (and the
        # unique index and trigger refuse anything else).
        row = self._tx.execute(
            "INSERT INTO gift_feed (live_id, live_sequence, gift_id, posted_at_us) "
            "SELECT CAST(? AS TEXT), 1 + COALESCE(MAX(live_sequence), 0), CAST(? AS TEXT), CAST(? AS BIGINT) "
            "FROM gift_feed WHERE live_id = ? RETURNING live_sequence",
            (gift.live_id, gift.gift_id, epoch_us(now), gift.live_id)).fetchone()
        return int(row[0])

    def place_diamond_hold(self, gift: SentGift, matures_at: dt.datetime) -> None:
        self._tx.execute("INSERT INTO diamond_hold (gift_id, creator, sender, matures_at_us) VALUES (?, ?, ?, ?)",
                         (gift.gift_id, gift.creator, gift.sender, epoch_us(matures_at)))

    def settle_diamond_hold(self, gift_id: str) -> None:
        if self._tx.execute("DELETE FROM diamond_hold WHERE gift_id = ?", (gift_id,)).rowcount != 1:
            raise ValueError(f"gift {gift_id} has no diamonds on hold")

    def matured_holds(self, now: dt.datetime, limit: int, creator: str | None = None) -> list[str]:
        if creator is None:
            found = self._tx.execute("SELECT gift_id FROM diamond_hold WHERE matures_at_us <= ? "
                                    "ORDER BY matures_at_us LIMIT ?", (epoch_us(now), limit))
        else:
            found = self._tx.execute("SELECT gift_id FROM diamond_hold WHERE creator = ? AND matures_at_us <= ? "
                                    "ORDER BY matures_at_us LIMIT ?", (creator, epoch_us(now), limit))
        return [row[0] for row in found]

    def held_diamond_gifts_sent_by(self, sender: str) -> list[str]:
        found = self._tx.execute(
            "SELECT h.gift_id FROM diamond_hold AS h JOIN gift AS g USING (gift_id) WHERE h.sender = ? "
            "ORDER BY g.sent_at_us DESC, g.gift_id", (sender,))
        return [row[0] for row in found]

    def gift_entries(self, gift_id: str) -> list[Entry]:
        found = self._tx.execute(f"SELECT {rows.ENTRY_COLUMNS} FROM transfer WHERE gift_id = ? ORDER BY id", (gift_id,))
        return [rows.entry_of(row) for row in found]

    def unresolved_pending(self, *, gift_id: str | None = None, transfer_ids: tuple[int, ...] = ()) -> list[Entry]:
        if gift_id is not None:
            found = self._tx.execute(
                f"SELECT {rows.ENTRY_COLUMNS} FROM transfer JOIN pending_open ON pending_open.transfer_id = transfer.id "
                "WHERE transfer.gift_id = ? ORDER BY id", (gift_id,))
        else:
            marks = ",".join("?" * len(transfer_ids))
            found = self._tx.execute(
                f"SELECT {rows.ENTRY_COLUMNS} FROM transfer JOIN pending_open ON pending_open.transfer_id = transfer.id "
                f"WHERE transfer.id IN ({marks}) ORDER BY id", transfer_ids)
        return [rows.entry_of(row) for row in found]

    def unresolved_held_gifts_of(self, sender: str) -> list[str]:
        found = self._tx.execute(
            "SELECT DISTINCT gift.gift_id FROM gift JOIN transfer ON transfer.gift_id = gift.gift_id "
            "JOIN pending_open ON pending_open.transfer_id = transfer.id "
            "WHERE gift.sender = ? AND gift.hold_reasons <> '' ORDER BY gift.gift_id", (sender,))
        return [row[0] for row in found]

    def expired_pending(self, now: dt.datetime, limit: int) -> list[Entry]:
        found = self._tx.execute(
            f"SELECT {rows.ENTRY_COLUMNS} FROM pending_open JOIN transfer ON transfer.id = pending_open.transfer_id "
            "WHERE pending_open.timeout_us <= ? ORDER BY pending_open.timeout_us, transfer.id LIMIT ?",
            (epoch_us(now), limit))
        return [rows.entry_of(row) for row in found]

    # Top-ups

    def insert_top_up(self, top_up: TopUp, now: dt.datetime) -> None:
        inserted = self._tx.execute(
            "INSERT INTO top_up (top_up_id, request_id, user_id, provider, receipt_id, pack_id, coins, "
            "price_eur_cents, purchased_at_us, created_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (provider, receipt_id) DO NOTHING",
            (top_up.top_up_id, top_up.request_id, top_up.user_id, top_up.provider, top_up.receipt_id,
             top_up.pack_id, top_up.coins, top_up.price_eur_cents, epoch_us(top_up.purchased_at), epoch_us(now))).rowcount
        if inserted != 1:  # receipt_redeemed_once
            raise FailedPrecondition("the receipt was already redeemed", reason="RECEIPT_ALREADY_REDEEMED",
                                     metadata={"receipt_id": top_up.receipt_id})

    def top_up(self, top_up_id: str) -> TopUp | None:
        row = self._tx.execute("SELECT * FROM top_up WHERE top_up_id = ?", (top_up_id,)).fetchone()
        if row is None:
            return None
        return TopUp(row["top_up_id"], row["request_id"], row["user_id"], row["provider"], row["receipt_id"],
                     row["pack_id"], row["coins"], row["price_eur_cents"], row["purchased_at_us"])

    def top_up_transaction(self, top_up_id: str) -> int | None:
        row = self._tx.execute(
            "SELECT transfer.id FROM top_up JOIN transfer ON transfer.request_id = top_up.request_id "
            "WHERE top_up.top_up_id = ? AND transfer.code = 'TOP_UP_COINS'", (top_up_id,)).fetchone()
        return int(row[0]) if row else None

    def insert_top_up_reversal(self, top_up_id: str, request_id: str, kind: str, now: dt.datetime) -> None:
        inserted = self._tx.execute(
            "INSERT INTO top_up_reversal (top_up_id, request_id, kind, reversed_at_us) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (top_up_id) DO NOTHING", (top_up_id, request_id, kind, epoch_us(now))).rowcount
        if inserted != 1:
            raise FailedPrecondition("the top-up was already reversed", reason="TOP_UP_ALREADY_REVERSED",
                                     metadata={"top_up": top_up_id})

    # Payouts

    def insert_payout(self, payout: Payout) -> None:
        diamonds_transfer, cash_transfer = payout.pending_transfer_ids
        self._tx.execute(
            "INSERT INTO payout (payout_id, request_id, user_id, eur_cents, diamonds, payout_method, requested_at_us, "
            "expires_at_us, diamonds_transfer_id, cash_transfer_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (payout.payout_id, payout.request_id, payout.user_id, payout.eur_cents, payout.diamonds,
             payout.payout_method, epoch_us(payout.requested_at), epoch_us(payout.expires_at), diamonds_transfer, cash_transfer))

    def payout(self, payout_id: str) -> Payout | None:
        return rows.find_payout(self._tx, payout_id)

    def insert_payout_settlement(self, settlement: PayoutSettlement) -> None:
        self._tx.execute(
            "INSERT INTO payout_settlement (payout_id, request_id, paid, provider_reference, failure_reason, "
            "settled_at_us) VALUES (?, ?, ?, ?, ?, ?)",
            (settlement.payout_id, settlement.request_id, int(settlement.paid), settlement.provider_reference,
             settlement.failure_reason, epoch_us(settlement.settled_at)))

    def payout_settlement(self, payout_id: str) -> PayoutSettlement | None:
        return rows.find_payout_settlement(self._tx, payout_id)

    def payout_resolution(self, payout: Payout) -> tuple[Phase, dt.datetime] | None:
        return rows.find_payout_resolution(self._tx, payout)

    def payout_cents_since(self, user_id: str, since: dt.datetime) -> int:
        row = self._tx.execute(
            "SELECT CAST(COALESCE(SUM(p.eur_cents), 0) AS BIGINT) FROM payout AS p WHERE p.user_id = ? AND p.requested_at_us > ? "
            "AND NOT EXISTS (SELECT 1 FROM transfer AS r WHERE r.pending_id = p.cash_transfer_id "
            "AND r.phase IN ('VOID_PENDING', 'EXPIRE_PENDING'))", (user_id, epoch_us(since))).fetchone()
        return int(row[0])

    # Audit

    def record_audit(self, event: AuditEvent) -> None:
        """Into the shared outbox, with the transfers this unit wrote since its last event."""
        transfers, self._unaudited_transfers = tuple(self._unaudited_transfers), []
        write_event(self._tx, self._events.traced(event, transfers=transfers, trace=self._trace))


def _violates(error: IntegrityError, sqlite_columns: str, postgres_constraint: str) -> bool:
    """Whether `error` is the UNIQUE violation of these columns (SQLite's words) or that index (PostgreSQL's)."""
    return sqlite_columns in str(error) or f'"{postgres_constraint}"' in str(error)


@functools.cache
def _insert_transfers(count: int) -> str:
    """The INSERT of `count` transfers: one text per count, so the driver's statement cache keeps it prepared."""
    row = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    return ("INSERT INTO transfer (request_id, code, phase, debit_account, credit_account, currency, amount, "
            "timeout_us, gift_id, created_at_us) VALUES " + ", ".join([row] * count) + " RETURNING id")
