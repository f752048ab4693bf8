"""Affiliate's store: `<data>/affiliate/affiliate.db` (SQLite, WAL, synchronous=FULL) or the PostgreSQL
schema `affiliate` (`LIMELIGHT_DATABASE_URL`), shared by every replica. The only SQL.

Invariants the schema holds, whatever the code above does: one sale commission per order
(`commissions_one_sale_per_order`), one attribution decision per order (its primary key), a
request id claimed once (`requests`), states and kinds from their closed sets, a clawback never
positive and a commission never negative otherwise. Every write is a unit of work on the
group committer, with its audit events written in the same transaction (the outbox). PostgreSQL
holds the same constraints; a write transaction holds the store's writer lock across replicas,
so what a unit reads (a visitor's last counted click, a day's CPC total) stays true until it commits.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

from libs.audit.outbox import DatabaseAuditOutbox, TracedEvent, outbox_migration, write_event
from libs.storage.committer import GroupCommitter
from libs.storage.database import Database, Migration, Row, Transaction, open_database
from libs.timestamps import duration_us, epoch_us, from_epoch_us
from services.affiliate.model.clicks import Click, FilterReason
from services.affiliate.model.commissions import (
    CandidateClick,
    Commission,
    CommissionKind,
    CommissionState,
    NonAttribution,
)
from services.affiliate.model.links import TrackingLink
from services.affiliate.model.programs import AttributionModel, Program, ProgramState, ProgramTerms
from services.affiliate.usecases.ports import AffiliateUnit, Attribution, PayoutRecord, Total, request_id_reused

T = TypeVar("T")

_SCHEMA_V1 = """
CREATE TABLE programs (
    merchant TEXT NOT NULL,
    program_id TEXT NOT NULL,
    display_name TEXT NOT NULL,
    products_json TEXT NOT NULL,
    commission_rate_bps INTEGER NOT NULL CHECK (commission_rate_bps BETWEEN 0 AND 10000),
    cost_per_click_minor INTEGER NOT NULL CHECK (cost_per_click_minor >= 0),
    daily_click_cap_minor INTEGER NOT NULL CHECK (daily_click_cap_minor >= 0),
    currency_code TEXT NOT NULL,
    attribution_window_us INTEGER NOT NULL CHECK (attribution_window_us BETWEEN 86400000000 AND 7776000000000),
    attribution_model TEXT NOT NULL CHECK (attribution_model IN ('LAST_CLICK', 'FIRST_CLICK')),
    return_window_us INTEGER NOT NULL CHECK (return_window_us BETWEEN 0 AND 7776000000000),
    state TEXT NOT NULL CHECK (state IN ('ACTIVE', 'PAUSED', 'ENDED')),
    create_us INTEGER NOT NULL,
    update_us INTEGER NOT NULL,
    PRIMARY KEY (merchant, program_id)
);
CREATE INDEX programs_newest ON programs (create_us DESC, merchant, program_id);
CREATE TABLE tracking_links (
    name TEXT PRIMARY KEY,
    creator TEXT NOT NULL,
    link_id TEXT NOT NULL,
    program TEXT NOT NULL,
    product TEXT NOT NULL,
    short_code TEXT NOT NULL UNIQUE,
    token TEXT NOT NULL,
    commission_rate_bps INTEGER CHECK (commission_rate_bps BETWEEN 0 AND 10000),
    create_us INTEGER NOT NULL
);
CREATE INDEX tracking_links_by_creator ON tracking_links (creator, create_us DESC, link_id);
CREATE TABLE clicks (
    click_id TEXT PRIMARY KEY,
    link TEXT NOT NULL REFERENCES tracking_links (name),
    counted INTEGER NOT NULL CHECK (counted IN (0, 1)),
    filter_reason TEXT,
    visitor_id TEXT NOT NULL,
    clicked_by TEXT NOT NULL,
    visitor_pseudonym TEXT NOT NULL,
    country_sealed BLOB,
    burst INTEGER NOT NULL CHECK (burst IN (0, 1)),
    cpc_earned_minor INTEGER NOT NULL CHECK (cpc_earned_minor >= 0),
    click_us INTEGER NOT NULL,
    CHECK ((counted = 1) = (filter_reason IS NULL))
);
CREATE INDEX clicks_counted_by_visitor ON clicks (visitor_id, click_us) WHERE counted = 1;
CREATE INDEX clicks_counted_by_time ON clicks (click_us) WHERE counted = 1;
CREATE INDEX clicks_counted_by_link ON clicks (link) WHERE counted = 1;
CREATE TABLE attributions (
    order_name TEXT PRIMARY KEY,
    merchant TEXT NOT NULL,
    buyer TEXT NOT NULL,
    visitor_id TEXT NOT NULL,
    attributed INTEGER NOT NULL CHECK (attributed IN (0, 1)),
    reason TEXT,
    commission TEXT NOT NULL,
    click TEXT NOT NULL,
    visitor_pseudonym TEXT NOT NULL,
    order_us INTEGER NOT NULL,
    CHECK ((attributed = 1) = (reason IS NULL))
);
CREATE INDEX attributions_by_pseudonym ON attributions (visitor_pseudonym, order_us) WHERE attributed = 1;
CREATE TABLE commissions (
    name TEXT PRIMARY KEY,
    creator TEXT NOT NULL,
    commission_id TEXT NOT NULL,
    program TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('SALE', 'CLICK')),
    state TEXT NOT NULL CHECK (state IN ('PENDING', 'SETTLED', 'INELIGIBLE', 'FROZEN', 'PAID')),
    state_reason TEXT NOT NULL,
    frozen_from TEXT CHECK (frozen_from IN ('PENDING', 'SETTLED')),
    tracking_link TEXT NOT NULL,
    click TEXT NOT NULL,
    order_name TEXT NOT NULL,
    order_paid_minor INTEGER NOT NULL CHECK (order_paid_minor >= 0),
    original_base_minor INTEGER NOT NULL CHECK (original_base_minor >= 0),
    base_amount_minor INTEGER NOT NULL CHECK (base_amount_minor >= 0),
    refunded_paid_minor INTEGER NOT NULL CHECK (refunded_paid_minor BETWEEN 0 AND order_paid_minor),
    rate_bps INTEGER NOT NULL CHECK (rate_bps BETWEEN 0 AND 10000),
    amount_minor INTEGER NOT NULL,
    currency_code TEXT NOT NULL,
    return_window_us INTEGER NOT NULL,
    settle_after_us INTEGER,
    create_us INTEGER NOT NULL,
    settle_us INTEGER,
    clawback_of TEXT NOT NULL,
    payout_reference TEXT NOT NULL,
    CHECK ((clawback_of = '') = (amount_minor >= 0)),
    CHECK ((state = 'FROZEN') = (frozen_from IS NOT NULL))
);
CREATE UNIQUE INDEX commissions_one_sale_per_order ON commissions (order_name)
    WHERE kind = 'SALE' AND clawback_of = '';
CREATE INDEX commissions_by_creator ON commissions (creator, create_us DESC, commission_id);
CREATE INDEX commissions_pending ON commissions (settle_after_us) WHERE state = 'PENDING';
CREATE TABLE cpc_days (
    creator TEXT NOT NULL,
    program TEXT NOT NULL,
    day_us INTEGER NOT NULL,
    earned_minor INTEGER NOT NULL CHECK (earned_minor >= 0),
    PRIMARY KEY (creator, program, day_us)
);
CREATE TABLE requests (
    request_id TEXT PRIMARY KEY,
    method TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    result TEXT
);
CREATE TABLE payouts (
    reference TEXT PRIMARY KEY,
    creator TEXT NOT NULL,
    currency_code TEXT NOT NULL,
    amount_minor INTEGER NOT NULL CHECK (amount_minor > 0),
    commission_count INTEGER NOT NULL,
    create_us INTEGER NOT NULL
);
"""
# PostgreSQL's text of version 1: the same tables and constraints, with 64-bit integers.
# A link's counted clicks by time: the duplicate and burst checks of RecordClick read them inside
# the write transaction, so every replica decides on the same clicks.
_CLICKS_BY_LINK_TIME = """
DROP INDEX clicks_counted_by_link;
CREATE INDEX clicks_counted_by_link_time ON clicks (link, click_us) WHERE counted = 1;
"""

MIGRATIONS = (
    Migration.portable(1, _SCHEMA_V1),
    outbox_migration(2),
    Migration(3, _CLICKS_BY_LINK_TIME, postgres=_CLICKS_BY_LINK_TIME),
)

_PROGRAM = ("merchant, program_id, display_name, products_json, commission_rate_bps, cost_per_click_minor,"
            " daily_click_cap_minor, currency_code, attribution_window_us, attribution_model, return_window_us, state,"
            " create_us, update_us")
_LINK = "creator, link_id, program, product, short_code, token, commission_rate_bps, create_us"
_CLICK = ("link, click_id, counted, filter_reason, visitor_id, clicked_by, visitor_pseudonym, burst, cpc_earned_minor,"
          " click_us")
_COMMISSION = ("creator, commission_id, kind, state, state_reason, tracking_link, click, order_name, order_paid_minor,"
               " original_base_minor, base_amount_minor, refunded_paid_minor, rate_bps, amount_minor, currency_code,"
               " return_window_us, settle_after_us, create_us, settle_us, frozen_from, clawback_of, payout_reference")
_COMMISSION_UPDATE = ", ".join(f"{column} = excluded.{column}" for column in ("program", *_COMMISSION.split(", ")))
_ATTRIBUTION = ("order_name, merchant, buyer, visitor_id, attributed, reason, commission, click, visitor_pseudonym,"
                " order_us")


def _us(moment: dt.datetime | None) -> int | None:
    return None if moment is None else epoch_us(moment)


def _moment(us: int | None) -> dt.datetime | None:
    return None if us is None else from_epoch_us(us)


def _program(row: Row) -> Program:
    terms = ProgramTerms(row["display_name"], tuple(json.loads(row["products_json"])), row["commission_rate_bps"],
                         row["cost_per_click_minor"], row["daily_click_cap_minor"], row["currency_code"],
                         dt.timedelta(microseconds=row["attribution_window_us"]),
                         AttributionModel(row["attribution_model"]),
                         dt.timedelta(microseconds=row["return_window_us"]), ProgramState(row["state"]))
    return Program(row["merchant"], row["program_id"], terms, from_epoch_us(row["create_us"]),
                   from_epoch_us(row["update_us"]))


def _link(row: Row) -> TrackingLink:
    return TrackingLink(row["creator"], row["link_id"], row["program"], row["product"], row["short_code"], row["token"],
                        row["commission_rate_bps"], from_epoch_us(row["create_us"]))


def _click(row: Row) -> Click:
    return Click(row["link"], row["click_id"], bool(row["counted"]),
                 FilterReason(row["filter_reason"]) if row["filter_reason"] else None, row["visitor_id"],
                 row["clicked_by"], row["visitor_pseudonym"], bool(row["burst"]), row["cpc_earned_minor"],
                 from_epoch_us(row["click_us"]))


def _commission(row: Row) -> Commission:
    return Commission(
        row["creator"], row["commission_id"], CommissionKind(row["kind"]), CommissionState(row["state"]),
        row["state_reason"], row["tracking_link"], row["click"], row["order_name"], row["order_paid_minor"],
        row["original_base_minor"], row["base_amount_minor"], row["refunded_paid_minor"], row["rate_bps"],
        row["amount_minor"], row["currency_code"], dt.timedelta(microseconds=row["return_window_us"]),
        _moment(row["settle_after_us"]), from_epoch_us(row["create_us"]), _moment(row["settle_us"]),
        CommissionState(row["frozen_from"]) if row["frozen_from"] else None, row["clawback_of"], row["payout_reference"])


def _attribution(row: Row) -> Attribution:
    return Attribution(row["order_name"], row["merchant"], row["buyer"], row["visitor_id"], bool(row["attributed"]),
                       NonAttribution(row["reason"]) if row["reason"] else None, row["commission"], row["click"],
                       row["visitor_pseudonym"], from_epoch_us(row["order_us"]))


class _Queries:
    """The reads both sides share, over one connection or transaction."""

    def __init__(self, row: Callable[[str, tuple[object, ...]], Row | None]) -> None:
        self._row = row

    def program(self, name: str) -> Program | None:
        merchant, _, program_id = name.partition("/programs/")
        row = self._row(f"SELECT {_PROGRAM} FROM programs WHERE merchant = ? AND program_id = ?", (merchant, program_id))
        return None if row is None else _program(row)

    def link(self, name: str) -> TrackingLink | None:
        row = self._row(f"SELECT {_LINK} FROM tracking_links WHERE name = ?", (name,))
        return None if row is None else _link(row)

    def commission(self, name: str) -> Commission | None:
        row = self._row(f"SELECT {_COMMISSION} FROM commissions WHERE name = ?", (name,))
        return None if row is None else _commission(row)


class StoreUnit(_Queries):
    """`AffiliateUnit` over one transaction on the committer's thread."""

    def __init__(self, tx: Transaction) -> None:
        super().__init__(lambda sql, parameters: tx.execute(sql, parameters).fetchone())
        self._tx = tx

    def claim(self, request_id: str, method: str, fingerprint: str) -> str | None:
        row = self._tx.execute("SELECT method, fingerprint, result FROM requests WHERE request_id = ?",
                               (request_id,)).fetchone()
        if row is None:
            self._tx.execute("INSERT INTO requests (request_id, method, fingerprint) VALUES (?, ?, ?)",
                             (request_id, method, fingerprint))
            return None
        if (row["method"], row["fingerprint"]) != (method, fingerprint):
            raise request_id_reused(request_id, method)
        return str(row["result"] or "")

    def set_result(self, request_id: str, result: str) -> None:
        self._tx.execute("UPDATE requests SET result = ? WHERE request_id = ?", (result, request_id))

    def record(self, event: object) -> None:
        assert isinstance(event, TracedEvent)
        write_event(self._tx, event)

    def add_program(self, program: Program) -> None:
        self._tx.execute(f"INSERT INTO programs ({_PROGRAM}) VALUES ({', '.join('?' * 14)})", _program_row(program))

    def update_program(self, program: Program) -> None:
        self._tx.execute("DELETE FROM programs WHERE merchant = ? AND program_id = ?",
                         (program.merchant, program.program_id))
        self.add_program(program)

    def add_link(self, link: TrackingLink) -> None:
        self._tx.execute(f"INSERT INTO tracking_links (name, {_LINK}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (link.name, link.creator, link.link_id, link.program, link.product, link.short_code,
                          link.token, link.commission_rate_bps, epoch_us(link.create_time)))

    def set_link_rate(self, name: str, rate_bps: int | None) -> None:
        self._tx.execute("UPDATE tracking_links SET commission_rate_bps = ? WHERE name = ?", (rate_bps, name))

    def click(self, click_id: str) -> Click | None:
        row = self._tx.execute(f"SELECT {_CLICK} FROM clicks WHERE click_id = ?", (click_id,)).fetchone()
        return None if row is None else _click(row)

    def add_click(self, click: Click, country_sealed: bytes | None) -> None:
        self._tx.execute(
            f"INSERT INTO clicks ({_CLICK}, country_sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (click.link, click.click_id, int(click.counted), click.filter_reason.value if click.filter_reason else None,
             click.visitor_id, click.user, click.visitor_pseudonym, int(click.burst), click.cpc_earned_minor,
             epoch_us(click.click_time), country_sealed))

    def counted_on_link_near(self, link: str, pseudonym: str, visitor_id: str, user: str, at: dt.datetime,
                             window: dt.timedelta) -> bool:
        return self._tx.execute(
            "SELECT 1 FROM clicks WHERE link = ? AND counted = 1 AND click_us > ? AND click_us < ?"
            " AND (visitor_pseudonym = ? OR visitor_id = ? OR clicked_by = ?) LIMIT 1",
            (link, epoch_us(at - window), epoch_us(at + window), pseudonym or None, visitor_id or None,
             user or None)).fetchone() is not None

    def counted_on_link_between(self, link: str, since: dt.datetime, until: dt.datetime) -> int:
        row = self._tx.execute("SELECT COUNT(*) FROM clicks WHERE link = ? AND counted = 1 AND click_us >= ?"
                               " AND click_us <= ?", (link, epoch_us(since), epoch_us(until))).fetchone()
        return int(row[0])

    def cpc_earned(self, creator: str, program: str, day: dt.datetime) -> int:
        row = self._tx.execute("SELECT earned_minor FROM cpc_days WHERE creator = ? AND program = ? AND day_us = ?",
                               (creator, program, epoch_us(day))).fetchone()
        return 0 if row is None else int(row[0])

    def add_cpc_earned(self, creator: str, program: str, day: dt.datetime, amount_minor: int) -> None:
        self._tx.execute("INSERT INTO cpc_days (creator, program, day_us, earned_minor) VALUES (?, ?, ?, ?)"
                         " ON CONFLICT (creator, program, day_us)"
                         " DO UPDATE SET earned_minor = cpc_days.earned_minor + excluded.earned_minor",
                         (creator, program, epoch_us(day), amount_minor))

    def candidate_clicks(self, visitor_id: str, merchant: str, order_time: dt.datetime) -> list[CandidateClick]:
        rows = self._tx.execute(
            "SELECT c.click_id, c.link, c.click_us, c.burst, c.visitor_pseudonym, l.creator, l.program,"
            " p.attribution_window_us, p.attribution_model FROM clicks c"
            " JOIN tracking_links l ON l.name = c.link"
            " JOIN programs p ON l.program = p.merchant || '/programs/' || p.program_id"
            " WHERE c.visitor_id = ? AND c.counted = 1 AND p.merchant = ? AND c.click_us <= ?"
            " AND c.click_us >= ? - p.attribution_window_us",
            (visitor_id, merchant, epoch_us(order_time), epoch_us(order_time))).fetchall()
        return [CandidateClick(f"{row['link']}/clicks/{row['click_id']}", row["link"], row["creator"], row["program"],
                               from_epoch_us(row["click_us"]), dt.timedelta(microseconds=row["attribution_window_us"]),
                               AttributionModel(row["attribution_model"]), bool(row["burst"]),
                               row["visitor_pseudonym"]) for row in rows]

    def orders_from_pseudonym(self, pseudonym: str, since: dt.datetime) -> int:
        row = self._tx.execute("SELECT COUNT(*) FROM attributions WHERE attributed = 1 AND visitor_pseudonym = ?"
                               " AND order_us >= ?", (pseudonym, epoch_us(since))).fetchone()
        return int(row[0])

    def attribution(self, order: str) -> Attribution | None:
        row = self._tx.execute(f"SELECT {_ATTRIBUTION} FROM attributions WHERE order_name = ?", (order,)).fetchone()
        return None if row is None else _attribution(row)

    def add_attribution(self, attribution: Attribution) -> None:
        a = attribution
        self._tx.execute(f"INSERT INTO attributions ({_ATTRIBUTION}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                         (a.order, a.merchant, a.buyer, a.visitor_id, int(a.attributed),
                          a.reason.value if a.reason else None, a.commission, a.click, a.visitor_pseudonym,
                          epoch_us(a.order_time)))

    def save_commission(self, commission: Commission, program: str) -> None:
        c = commission
        self._tx.execute(
            f"INSERT INTO commissions (name, program, {_COMMISSION}) VALUES ({', '.join('?' * 24)})"
            f" ON CONFLICT (name) DO UPDATE SET {_COMMISSION_UPDATE}",
            (c.name, program, c.creator, c.commission_id, c.kind.value, c.state.value, c.state_reason, c.tracking_link,
             c.click, c.order, c.order_paid_minor, c.original_base_minor, c.base_amount_minor, c.refunded_paid_minor,
             c.rate_bps, c.amount_minor, c.currency_code, duration_us(c.return_window), _us(c.settle_after_time),
             epoch_us(c.create_time), _us(c.settle_time), c.frozen_from.value if c.frozen_from else None,
             c.clawback_of, c.payout_reference))

    def settleable(self, before: dt.datetime) -> list[Commission]:
        rows = self._tx.execute(f"SELECT {_COMMISSION} FROM commissions WHERE state = 'PENDING'"
                                " AND settle_after_us IS NOT NULL AND settle_after_us <= ? ORDER BY settle_after_us",
                                (epoch_us(before),)).fetchall()
        return [_commission(row) for row in rows]

    def payable(self, creator: str) -> list[Commission]:
        rows = self._tx.execute(f"SELECT {_COMMISSION} FROM commissions WHERE creator = ? AND state = 'SETTLED'"
                                " ORDER BY create_us", (creator,)).fetchall()
        return [_commission(row) for row in rows]

    def add_payout(self, payout: PayoutRecord) -> None:
        self._tx.execute("INSERT INTO payouts (reference, creator, currency_code, amount_minor, commission_count,"
                         " create_us) VALUES (?, ?, ?, ?, ?, ?)",
                         (payout.reference, payout.creator, payout.currency_code, payout.amount_minor,
                          payout.commission_count, epoch_us(payout.create_time)))


def _program_row(program: Program) -> tuple[object, ...]:
    t = program.terms
    return (program.merchant, program.program_id, t.display_name, json.dumps(list(t.products)), t.commission_rate_bps,
            t.cost_per_click_minor, t.daily_click_cap_minor, t.currency_code, duration_us(t.attribution_window),
            t.attribution_model.value, duration_us(t.return_window), t.state.value, epoch_us(program.create_time),
            epoch_us(program.update_time))


class AffiliateStore:
    """The writer (through the group committer), a reader beside it, and the audit outbox."""

    def __init__(self, writer: Database) -> None:
        self._writer = writer
        self._reader = writer.open_reader()
        self._committer = GroupCommitter(self._writer, name="affiliate-store")
        self.audit_outbox = DatabaseAuditOutbox(self._reader, committer=self._committer)

    @classmethod
    def open(cls, data_root: Path) -> AffiliateStore:
        return cls(open_database("affiliate", MIGRATIONS, root=data_root))

    @property
    def shared(self) -> bool:
        """Whether other replicas may be writing this store too (PostgreSQL)."""
        return self._writer.engine == "postgres"

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        self._committer.add_commit_listener(listener)

    async def run(self, work: Callable[[AffiliateUnit], T]) -> T:
        return await self._committer.run(lambda tx: work(StoreUnit(tx)))

    async def record(self, event: object) -> None:
        """An audit event alone (a refusal: nothing changed, so nothing to share a transaction with)."""
        def work(tx: Transaction) -> None:
            assert isinstance(event, TracedEvent)
            write_event(tx, event)
        await self._committer.run(work)

    def close(self) -> None:
        self._committer.close()
        self._writer.close()
        self._reader.close()

    # -- reads (blocking; async callers run them in a thread) --------------------------------------

    def _query(self, sql: str, parameters: Sequence[object] = ()) -> list[Row]:
        with self._reader.reading() as connection:
            return list(connection.execute(sql, parameters).fetchall())

    def _one(self) -> _Queries:
        return _Queries(lambda sql, parameters: next(iter(self._query(sql, parameters)), None))

    def program(self, name: str) -> Program | None:
        return self._one().program(name)

    def link(self, name: str) -> TrackingLink | None:
        return self._one().link(name)

    def commission(self, name: str) -> Commission | None:
        return self._one().commission(name)

    def programs(self, merchant: str | None, state: ProgramState | None, after: tuple[int, str] | None,
                 limit: int) -> list[Program]:
        clauses, parameters = ["1 = 1"], list[object]()
        if merchant is not None:
            clauses.append("merchant = ?")
            parameters.append(merchant)
        if state is not None:
            clauses.append("state = ?")
            parameters.append(state.value)
        if after is not None:
            clauses.append("(create_us < ? OR (create_us = ? AND merchant || '/programs/' || program_id > ?))")
            parameters += [after[0], after[0], after[1]]
        rows = self._query(f"SELECT {_PROGRAM} FROM programs WHERE {' AND '.join(clauses)}"
                           " ORDER BY create_us DESC, merchant, program_id LIMIT ?", [*parameters, limit])
        return [_program(row) for row in rows]

    def links(self, creator: str, program: str, after: tuple[int, str] | None, limit: int) -> list[TrackingLink]:
        clauses, parameters = ["creator = ?"], list[object]([creator])
        if program:
            clauses.append("program = ?")
            parameters.append(program)
        if after is not None:
            clauses.append("(create_us < ? OR (create_us = ? AND link_id > ?))")
            parameters += [after[0], after[0], after[1]]
        rows = self._query(f"SELECT {_LINK} FROM tracking_links WHERE {' AND '.join(clauses)}"
                           " ORDER BY create_us DESC, link_id LIMIT ?", [*parameters, limit])
        return [_link(row) for row in rows]

    def counted_clicks(self, link: str) -> int:
        return int(self._query("SELECT COUNT(*) FROM clicks WHERE link = ? AND counted = 1", (link,))[0][0])

    def commissions(self, creator: str, state: CommissionState | None, after: tuple[int, str] | None,
                    limit: int) -> list[Commission]:
        clauses, parameters = ["creator = ?"], list[object]([creator])
        if state is not None:
            clauses.append("state = ?")
            parameters.append(state.value)
        if after is not None:
            clauses.append("(create_us < ? OR (create_us = ? AND commission_id > ?))")
            parameters += [after[0], after[0], after[1]]
        rows = self._query(f"SELECT {_COMMISSION} FROM commissions WHERE {' AND '.join(clauses)}"
                           " ORDER BY create_us DESC, commission_id LIMIT ?", [*parameters, limit])
        return [_commission(row) for row in rows]

    def totals(self, creator: str, since: dt.datetime | None, until: dt.datetime | None) -> list[Total]:
        clauses, parameters = ["creator = ?"], list[object]([creator])
        if since is not None:
            clauses.append("create_us >= ?")
            parameters.append(epoch_us(since))
        if until is not None:
            clauses.append("create_us < ?")
            parameters.append(epoch_us(until))
        rows = self._query(f"SELECT state, currency_code, SUM(amount_minor) FROM commissions"
                           f" WHERE {' AND '.join(clauses)} GROUP BY state, currency_code ORDER BY state, currency_code",
                           parameters)
        return [Total(CommissionState(row[0]), row[1], int(row[2])) for row in rows]

    def recent_counted_clicks(self, since: dt.datetime) -> list[Click]:
        rows = self._query(f"SELECT {_CLICK} FROM clicks WHERE counted = 1 AND click_us >= ?", (epoch_us(since),))
        return [_click(row) for row in rows]

    def clicks_of_user(self, user: str) -> list[tuple[Click, bytes | None]]:
        rows = self._query(f"SELECT {_CLICK}, country_sealed FROM clicks WHERE clicked_by = ? ORDER BY click_us",
                           (user,))
        return [(_click(row), row["country_sealed"]) for row in rows]

    def attributions_of_buyer(self, buyer: str) -> list[Attribution]:
        rows = self._query(f"SELECT {_ATTRIBUTION} FROM attributions WHERE buyer = ? ORDER BY order_us", (buyer,))
        return [_attribution(row) for row in rows]

    async def erase_visitor_data(self, user: str, event: object) -> int:
        """Erasure: the user's clicks keep their counts, lose their visitor id, pseudonym and country."""
        def work(tx: Transaction) -> int:
            cursor = tx.execute("UPDATE clicks SET visitor_id = '', visitor_pseudonym = '', country_sealed = NULL"
                                " WHERE clicked_by = ?", (user,))
            tx.execute("UPDATE attributions SET visitor_id = '', visitor_pseudonym = '' WHERE buyer = ?", (user,))
            assert isinstance(event, TracedEvent)
            write_event(tx, event)
            return cursor.rowcount
        return await self._committer.run(work)

