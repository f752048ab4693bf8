"""The ad repository: `<data>/compliance/ads.db` (SQLite, WAL, synchronous=FULL), or the schema
`compliance_ads` on PostgreSQL. The only SQL here.

Idempotency lives in the schema: a registration's request id is the primary key of its
entry's row, an impression batch's request id the key of its batch row, both written in the
same transaction as the change.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from pathlib import Path

from libs.errors import AlreadyExists, NotFound
from libs.storage.database import Database, Migration, Row, Transaction, open_database
from libs.timestamps import epoch_us, from_epoch_us
from services.compliance.ads.model import Ad, AdDraft, AdKind, AdSearch, Displays, Targeting, one_year_after

MIGRATIONS = (
    Migration.portable(1, """
CREATE TABLE ads (
    name TEXT PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
    fingerprint TEXT NOT NULL,
    kind TEXT NOT NULL,
    content TEXT NOT NULL,
    summary TEXT NOT NULL,
    advertiser TEXT NOT NULL,
    payer TEXT NOT NULL,
    brand TEXT NOT NULL,
    creator TEXT NOT NULL,
    found_by_engine INTEGER NOT NULL CHECK (found_by_engine IN (0, 1)),
    targeting TEXT NOT NULL,
    create_us INTEGER NOT NULL,
    first_display_us INTEGER,
    last_display_us INTEGER,
    sort_key INTEGER NOT NULL DEFAULT 0,
    retain_until_us INTEGER NOT NULL,
    CHECK (last_display_us IS NULL OR first_display_us <= last_display_us)
);
CREATE INDEX ads_by_recency ON ads (sort_key DESC, name);
CREATE INDEX ads_by_retention ON ads (retain_until_us);
CREATE TABLE ad_reach (
    ad TEXT NOT NULL REFERENCES ads (name) ON DELETE CASCADE,
    member_state TEXT NOT NULL,
    day TEXT NOT NULL,
    impressions INTEGER NOT NULL CHECK (impressions > 0),
    PRIMARY KEY (ad, member_state, day)
);
CREATE INDEX ad_reach_by_state ON ad_reach (member_state, ad);
CREATE TABLE impression_batches (
    request_id TEXT PRIMARY KEY,
    ad TEXT NOT NULL REFERENCES ads (name) ON DELETE CASCADE,
    fingerprint TEXT NOT NULL
);
"""),
)


def _moment_or_none(micros: int | None) -> dt.datetime | None:
    return None if micros is None else from_epoch_us(micros)


def _like(text: str) -> str:
    escaped = text.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


class AdRepositoryStore:
    def __init__(self, database: Database) -> None:
        self._db = database

    @classmethod
    def open(cls, data_root: Path) -> AdRepositoryStore:
        return cls(open_database("compliance", MIGRATIONS, area="ads", root=data_root))

    def close(self) -> None:
        self._db.close()

    def register(self, ad: Ad, request_id: str, fingerprint: str) -> Ad:
        draft = ad.draft
        with self._db.transaction() as tx:
            row = tx.execute("SELECT name, fingerprint FROM ads WHERE request_id = ?", (request_id,)).fetchone()
            if row is not None:
                if row["fingerprint"] != fingerprint:
                    raise AlreadyExists(f"request_id {request_id} registered a different entry, {row['name']}",
                                        reason="REQUEST_ID_REUSED", metadata={"ad": row["name"]})
                return self._load(tx, row["name"])
            tx.execute(
                "INSERT INTO ads (name, request_id, fingerprint, kind, content, summary, advertiser, payer, brand,"
                " creator, found_by_engine, targeting, create_us, retain_until_us)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (ad.name, request_id, fingerprint, draft.kind.value, draft.content, draft.summary, draft.advertiser,
                 draft.paid_by, draft.brand, draft.creator, int(draft.found_by_engine),
                 json.dumps(_targeting_json(draft.targeting)), epoch_us(ad.create_time), epoch_us(ad.retain_until)))
            return self._load(tx, ad.name)

    def add_displays(self, name: str, request_id: str, fingerprint: str, rows: Sequence[Displays],
                     now: dt.datetime) -> Ad:
        with self._db.transaction() as tx:
            if self._live(tx, name, now) is None:
                raise NotFound(f"{name} is not in the ad repository", resource_name=name, reason="AD_NOT_FOUND")
            batch = tx.execute("SELECT ad, fingerprint FROM impression_batches WHERE request_id = ?",
                               (request_id,)).fetchone()
            if batch is not None:
                if batch["fingerprint"] != fingerprint:
                    raise AlreadyExists(f"request_id {request_id} recorded a different batch",
                                        reason="REQUEST_ID_REUSED", metadata={"ad": batch["ad"]})
                return self._load(tx, name)
            tx.execute("INSERT INTO impression_batches (request_id, ad, fingerprint) VALUES (?, ?, ?)",
                       (request_id, name, fingerprint))
            tx.executemany(
                "INSERT INTO ad_reach (ad, member_state, day, impressions) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (ad, member_state, day) DO UPDATE SET impressions = ad_reach.impressions + excluded.impressions",
                [(name, row.member_state, row.day.isoformat(), row.impressions) for row in rows])
            first_day = dt.datetime.combine(min(row.day for row in rows), dt.time(), dt.UTC)
            last_day = dt.datetime.combine(max(row.day for row in rows), dt.time(), dt.UTC)
            # The last display is known to the day; the repository keeps it until a year after that day ends.
            last_display = min(last_day + dt.timedelta(days=1) - dt.timedelta(microseconds=1), now)
            # The earlier first display and the later last one, as CASE: SQLite's scalar MIN/MAX are
            # PostgreSQL's LEAST/GREATEST, and neither engine knows the other's spelling.
            tx.execute(
                "UPDATE ads SET"
                " first_display_us = CASE WHEN first_display_us < :first THEN first_display_us ELSE :first END,"
                " last_display_us = CASE WHEN last_display_us > :last THEN last_display_us ELSE :last END,"
                " sort_key = CASE WHEN last_display_us > :last THEN last_display_us ELSE :last END WHERE name = :name",
                {"first": epoch_us(first_day), "last": epoch_us(last_display), "name": name})
            last = tx.execute("SELECT last_display_us FROM ads WHERE name = ?", (name,)).fetchone()[0]
            tx.execute("UPDATE ads SET retain_until_us = ? WHERE name = ?",
                       (epoch_us(one_year_after(_moment_or_none(last) or now)), name))
            return self._load(tx, name)

    def get(self, name: str, now: dt.datetime) -> Ad | None:
        with self._db.reading() as connection:
            return self._ad(connection, self._live(connection, name, now))

    def search(self, search: AdSearch, now: dt.datetime, after: tuple[int, str] | None, limit: int) -> list[Ad]:
        clauses = ["retain_until_us >= ?"]
        parameters: list[object] = [epoch_us(now)]
        if search.advertiser:
            clauses.append("(lower(advertiser) LIKE ? ESCAPE '\\' OR lower(payer) LIKE ? ESCAPE '\\')")
            parameters += [_like(search.advertiser)] * 2
        if search.payer:
            clauses.append("lower(payer) LIKE ? ESCAPE '\\'")
            parameters.append(_like(search.payer))
        if search.text:
            clauses.append("(lower(summary) LIKE ? ESCAPE '\\' OR lower(brand) LIKE ? ESCAPE '\\'"
                           " OR lower(content) LIKE ? ESCAPE '\\')")
            parameters += [_like(search.text)] * 3
        if search.kind is not None:
            clauses.append("kind = ?")
            parameters.append(search.kind.value)
        if search.member_state:
            clauses.append("EXISTS (SELECT 1 FROM ad_reach r WHERE r.ad = ads.name AND r.member_state = ?)")
            parameters.append(search.member_state)
        if search.start is not None:
            clauses.append("last_display_us >= ?")
            parameters.append(epoch_us(search.start))
        if search.end is not None:
            clauses.append("first_display_us < ?")
            parameters.append(epoch_us(search.end))
        if after is not None:
            clauses.append("(sort_key < ? OR (sort_key = ? AND name > ?))")
            parameters += [after[0], after[0], after[1]]
        sql = f"SELECT * FROM ads WHERE {' AND '.join(clauses)} ORDER BY sort_key DESC, name LIMIT ?"
        with self._db.reading() as connection:
            rows = connection.execute(sql, [*parameters, limit]).fetchall()
            return [ad for ad in (self._ad(connection, row) for row in rows) if ad is not None]

    def delete_expired(self, now: dt.datetime) -> int:
        with self._db.transaction() as tx:
            return int(tx.execute("DELETE FROM ads WHERE retain_until_us < ?", (epoch_us(now),)).rowcount)

    # -- rows -> entries --------------------------------------------------------------------

    def _live(self, connection: Transaction, name: str, now: dt.datetime) -> Row | None:
        row: Row | None = connection.execute(
            "SELECT * FROM ads WHERE name = ? AND retain_until_us >= ?", (name, epoch_us(now))).fetchone()
        return row

    def _load(self, tx: Transaction, name: str) -> Ad:
        row = tx.execute("SELECT * FROM ads WHERE name = ?", (name,)).fetchone()
        ad = self._ad(tx, row)
        assert ad is not None, f"{name} was written in this transaction"
        return ad

    def _ad(self, connection: Transaction, row: Row | None) -> Ad | None:
        if row is None:
            return None
        reach = {state: int(total) for state, total in connection.execute(
            "SELECT member_state, SUM(impressions) FROM ad_reach WHERE ad = ? GROUP BY member_state ORDER BY"
            " member_state", (row["name"],)).fetchall()}
        draft = AdDraft(
            kind=AdKind(row["kind"]), content=row["content"], summary=row["summary"], advertiser=row["advertiser"],
            payer=row["payer"], targeting=_targeting(json.loads(row["targeting"])), brand=row["brand"],
            creator=row["creator"], found_by_engine=bool(row["found_by_engine"]))
        return Ad(name=row["name"], draft=draft, create_time=_moment_or_none(row["create_us"]) or dt.datetime.min,
                  first_display=_moment_or_none(row["first_display_us"]), last_display=_moment_or_none(row["last_display_us"]),
                  reach=reach)


def _targeting_json(targeting: Targeting) -> dict[str, object]:
    return {"member_states": list(targeting.member_states), "min_age": targeting.min_age,
            "max_age": targeting.max_age, "interests": list(targeting.interests),
            "uses_profiling": targeting.uses_profiling,
            "excluded_member_states": list(targeting.excluded_member_states),
            "excluded_interests": list(targeting.excluded_interests)}


def _targeting(data: dict[str, object]) -> Targeting:
    def strings(name: str) -> tuple[str, ...]:
        value = data.get(name) or []
        assert isinstance(value, list)
        return tuple(str(item) for item in value)

    return Targeting(member_states=strings("member_states"), min_age=int(str(data.get("min_age", 0))),
                     max_age=int(str(data.get("max_age", 0))), interests=strings("interests"),
                     uses_profiling=bool(data.get("uses_profiling")),
                     excluded_member_states=strings("excluded_member_states"),
                     excluded_interests=strings("excluded_interests"))
