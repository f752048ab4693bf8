"""The read models: wallets, statements, LIVE sessions, the feed, leaderboards, payouts, standing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from libs.storage.database import Database, Transaction
from libs.timestamps import epoch_us, from_epoch_us
from services.gifts.model.ledger import GIFT_REVERSAL_CODES, Account, Code, Phase, Purpose
from services.gifts.model.live import LiveSession, LiveState
from services.gifts.model.records import (
    GiftState,
    Payout,
    PayoutResult,
    PayoutSettlement,
    PayoutState,
    SentGift,
    current_payout,
)
from services.gifts.model.views import (
    AccountStanding,
    FeedItem,
    LeaderboardEntry,
    LiveSummary,
    Party,
    StatementLine,
    Wallet,
)
from services.gifts.store import rows
from services.gifts.store.schema import open_ledger_database

WALLET_PURPOSES = frozenset({Purpose.COINS, Purpose.DIAMONDS_ON_HOLD, Purpose.DIAMONDS})
MAX_REQUEST_ENTRIES = 10_000  # more than any one request writes (a sweep writes a few hundred)


class _ReadPayouts:
    """The payout lookups `current_payout` needs, over a read snapshot."""

    def __init__(self, connection: Transaction) -> None:
        self._connection = connection

    def payout_settlement(self, payout_id: str) -> PayoutSettlement | None:
        return rows.find_payout_settlement(self._connection, payout_id)

    def payout_resolution(self, payout: Payout) -> tuple[Phase, dt.datetime] | None:
        return rows.find_payout_resolution(self._connection, payout)


class GiftsReader:
    """The read side: wallets, statements, sessions, the feed, leaderboards, payouts.

    Reads run on the database's reader (`Database.open_reader`): on SQLite a connection of
    their own, which WAL lets run beside the writer (in this process or in the ledger process),
    made `query_only`; on PostgreSQL READ ONLY snapshots from the pool. Nothing here can write.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        if database.engine == "sqlite":
            with database.reading() as connection:
                connection.execute("PRAGMA query_only = ON")

    @classmethod
    def of_service(cls, root: Path | None = None) -> GiftsReader:
        opened = open_ledger_database(root)
        reader = opened.open_reader()
        if reader is not opened:
            opened.close()
        return cls(reader)

    def close(self) -> None:
        self.database.close()

    @contextmanager
    def _read(self) -> Iterator[Transaction]:
        with self.database.reading() as connection:
            yield connection

    # Read side -----------------------------------------------------------------------------

    def wallet(self, user_id: str) -> Wallet:
        purposes = {Account.of_user(user_id, purpose).name: purpose for purpose in WALLET_PURPOSES}
        marks = ",".join("?" * len(purposes))
        with self._read() as connection:
            found = connection.execute(f"SELECT * FROM account WHERE name IN ({marks})", tuple(purposes)).fetchall()
            latest = connection.execute(
                f"SELECT MAX(created_at_us) FROM (SELECT MAX(created_at_us) AS created_at_us FROM transfer "
                f"WHERE debit_account IN ({marks}) UNION ALL SELECT MAX(created_at_us) FROM transfer "
                f"WHERE credit_account IN ({marks})) AS latest", (*purposes, *purposes)).fetchone()[0]
        return Wallet(user_id, {purposes[row["name"]]: rows.balance_of(row) for row in found},
                      rows.from_epoch_us_or_none(latest))

    def statement(self, user_id: str, *, before_id: int | None, limit: int, codes: frozenset[Code] | None = None,
                  purposes: frozenset[Purpose] = WALLET_PURPOSES, request_id: str | None = None
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
            found = connection.execute(
                f"SELECT {rows.ENTRY_COLUMNS}, resolution.phase AS resolution, gift.live_id AS live_id, "
                "gift.creator AS creator, payout.payout_id AS payout_id FROM transfer "
                "LEFT JOIN transfer AS resolution ON resolution.pending_id = transfer.id "
                "LEFT JOIN gift ON gift.gift_id = transfer.gift_id "
                "LEFT JOIN payout ON payout.request_id = transfer.request_id AND transfer.code = 'PAYOUT_DIAMONDS' "
                f"WHERE transfer.id < ? AND transfer.pending_id IS NULL {code_filter} "
                f"AND (transfer.debit_account IN ({marks}) OR transfer.credit_account IN ({marks})) "
                "ORDER BY transfer.id DESC LIMIT ?",
                (before_id if before_id is not None else 2**63 - 1, *code_values, *names, *names, limit)).fetchall()
        return [StatementLine(rows.entry_of(row), Phase(row["resolution"]) if row["resolution"] else None, row["live_id"],
                              row["creator"], row["payout_id"]) for row in found]

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
        return rows.live_of(row) if row else None

    def live_summary(self, live_id: str) -> LiveSummary | None:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM live_session WHERE live_id = ?", (live_id,)).fetchone()
            if row is None:
                return None
            gifts, diamonds = connection.execute(
                "SELECT COUNT(DISTINCT CASE WHEN t.code = 'GIFT_DIAMONDS' THEN g.gift_id END) "
                "  - COUNT(DISTINCT CASE WHEN t.code = 'GIFT_DIAMONDS_REVERSAL' THEN g.gift_id END), "
                "CAST(COALESCE(SUM(CASE t.code WHEN 'GIFT_DIAMONDS' THEN t.amount ELSE -t.amount END), 0) AS BIGINT) "
                "FROM gift AS g JOIN transfer AS t ON t.gift_id = g.gift_id WHERE g.live_id = ? "
                "AND t.phase IN ('POSTED', 'POST_PENDING') AND t.code IN ('GIFT_DIAMONDS', 'GIFT_DIAMONDS_REVERSAL')",
                (live_id,)).fetchone()
        return LiveSummary(rows.live_of(row), int(gifts), int(diamonds))

    def lives(self, *, host: str | None, before_live_id: str | None, limit: int, state: LiveState | None = None,
              now: dt.datetime) -> list[LiveSession]:
        """Sessions newest first (live ids are time-ordered), of one host or of all."""
        filters, parameters = ["live_id < ?"], list[object]([before_live_id or "~"])
        if host is not None:
            filters.append("host = ?")
            parameters.append(host)
        if state is LiveState.LIVE:
            filters.append("ended_at_us IS NULL AND deadline_us > ?")
            parameters.append(epoch_us(now))
        elif state is LiveState.ENDED:
            filters.append("(ended_at_us IS NOT NULL OR deadline_us <= ?)")
            parameters.append(epoch_us(now))
        with self._read() as connection:
            found = connection.execute(f"SELECT * FROM live_session WHERE {' AND '.join(filters)} "
                                      "ORDER BY live_id DESC LIMIT ?", (*parameters, limit)).fetchall()
        return [rows.live_of(row) for row in found]

    def feed(self, live_id: str, *, after_sequence: int, limit: int) -> list[FeedItem]:
        with self._read() as connection:
            found = connection.execute(
                "SELECT f.live_sequence AS sequence, f.posted_at_us, g.* FROM gift_feed AS f "
                "JOIN gift AS g USING (gift_id) "
                "WHERE f.live_id = ? AND f.live_sequence > ? ORDER BY f.live_sequence LIMIT ?",
                (live_id, after_sequence, limit)).fetchall()
        return [FeedItem(row["sequence"], from_epoch_us(row["posted_at_us"]), rows.gift_of(row)) for row in found]

    def leaderboard(self, *, party: Party, limit: int, offset: int = 0, live_id: str | None = None,
                    creator: str | None = None, since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> list[LeaderboardEntry]:
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
                              ("g.sent_at_us >= ?", rows.epoch_us_or_none(since)),
                              ("g.sent_at_us < ?", rows.epoch_us_or_none(until))):
            if value is not None:
                filters.append(clause)
                parameters.append(value)
        codes = ",".join(f"'{code.value}'" for code in legs + reversals)
        credits = ",".join(f"'{code.value}'" for code in legs)
        net = f"SUM(CASE WHEN t.code IN ({credits}) THEN t.amount ELSE -t.amount END)"
        with self._read() as connection:
            found = connection.execute(
                f"SELECT party, net, RANK() OVER (ORDER BY net DESC) AS rank FROM ("
                f"  SELECT {column} AS party, CAST({net} AS BIGINT) AS net "
                "   FROM gift AS g JOIN transfer AS t ON t.gift_id = g.gift_id "
                f"  WHERE t.phase IN ('POSTED', 'POST_PENDING') AND t.code IN ({codes}) AND {' AND '.join(filters)} "
                f"  GROUP BY {column} HAVING {net} > 0"
                ") AS ranked ORDER BY net DESC, party LIMIT ? OFFSET ?", (*parameters, limit, offset)).fetchall()
        return [LeaderboardEntry(row["rank"], row["party"], row["net"]) for row in found]

    def payouts(self, user_id: str, *, before_payout_id: str | None, limit: int,
                state: PayoutState | None = None) -> list[PayoutResult]:
        """The user's payouts, newest first (payout ids are time-ordered), optionally in one state."""
        resolved = ("SELECT phase FROM transfer AS r WHERE r.pending_id = payout.cash_transfer_id")
        state_filter = {None: "", PayoutState.PENDING: f"AND NOT EXISTS ({resolved})",
                        PayoutState.POSTED: f"AND 'POST_PENDING' IN ({resolved})",
                        PayoutState.VOIDED: f"AND ({resolved}) IN ('VOID_PENDING', 'EXPIRE_PENDING')"}[state]
        with self._read() as connection:
            found = connection.execute(f"SELECT * FROM payout WHERE user_id = ? AND payout_id < ? {state_filter} "
                                      "ORDER BY payout_id DESC LIMIT ?",
                                      (user_id, before_payout_id or "~", limit)).fetchall()
            outcomes = _ReadPayouts(connection)
            return [current_payout(outcomes, rows.payout_of(row)) for row in found]

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
        return rows.gift_of(row), state

    def payout(self, payout_id: str) -> PayoutResult | None:
        with self._read() as connection:
            payout = rows.find_payout(connection, payout_id)
            return None if payout is None else current_payout(_ReadPayouts(connection), payout)

    def account_standing(self, user_id: str) -> AccountStanding:
        with self._read() as connection:
            row = connection.execute("SELECT * FROM account_facts WHERE user_id = ?", (user_id,)).fetchone()
        if row is None:
            return AccountStanding(rows.facts_of(user_id, None), None, "")
        return AccountStanding(rows.facts_of(user_id, row), from_epoch_us(row["updated_at_us"]), row["updated_by"])
