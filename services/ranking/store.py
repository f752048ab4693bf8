"""Persistence of ranking, on SQLite or PostgreSQL (`libs.storage.database`): the only SQL in the service.

Writes go through one `GroupCommitter` (each use case one unit of work; units queued while a
commit is in flight share it). Reads go around it, in a thread. `load` reads everything the
catalogue is rebuilt from at start.

What the store holds is the durable truth: candidates and their counts, signals (one row per
event id), follows, flagged accounts, feed settings, the items each page showed, and live
engagement. Everything ranking decides with between starts (the catalogue, its index, the
trained factors, the bot guard's windows) lives in the serving process, built from here by
`load` and `history`; so replicas over one PostgreSQL would each see only their own writes
until restarted (see services/ranking/README.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from libs.storage.committer import GroupCommitter
from libs.storage.database import Database, Migration, Transaction, open_database
from libs.timestamps import epoch_us, from_epoch_us
from services.ranking.model import (
    Adjustment,
    Candidate,
    EngagementCounts,
    ExposureStage,
    FeedMode,
    FeedSettings,
    Follow,
    LiveEngagement,
    RemovalReason,
    ShownItem,
    SignalKind,
    Source,
    StoredSignal,
    VideoRegistration,
)

_SCHEMA_V1 = """
    CREATE TABLE candidates (
        creator TEXT NOT NULL, video TEXT NOT NULL,
        duration_us INTEGER NOT NULL CHECK (duration_us > 0),
        hashtags_json TEXT NOT NULL, labels_json TEXT NOT NULL,
        commercial INTEGER NOT NULL, language_code TEXT NOT NULL, region_code TEXT NOT NULL,
        unsuitable_for_minors INTEGER NOT NULL, ad TEXT NOT NULL,
        publish_us INTEGER NOT NULL, register_us INTEGER NOT NULL,
        stage INTEGER NOT NULL, removed_reason INTEGER, counts_json TEXT NOT NULL,
        PRIMARY KEY (creator, video));
    CREATE TABLE signals (
        event_id TEXT PRIMARY KEY, viewer TEXT NOT NULL, kind INTEGER NOT NULL, target TEXT NOT NULL,
        occur_us INTEGER NOT NULL, watch_us INTEGER NOT NULL, report_reason INTEGER NOT NULL,
        report_details_sealed BLOB, discount_reason TEXT NOT NULL, record_us INTEGER NOT NULL);
    CREATE INDEX signals_by_viewer ON signals (viewer, record_us);
    CREATE TABLE follows (
        follower TEXT NOT NULL, creator TEXT NOT NULL, create_us INTEGER NOT NULL,
        PRIMARY KEY (follower, creator));
    CREATE INDEX follows_by_creator ON follows (creator, create_us);
    CREATE TABLE flagged_accounts (account TEXT PRIMARY KEY, flag_us INTEGER NOT NULL);
    CREATE TABLE feed_settings (account TEXT PRIMARY KEY, default_mode INTEGER, update_us INTEGER NOT NULL);
    CREATE TABLE feed_items (
        viewer TEXT NOT NULL, item_id TEXT NOT NULL, creator TEXT NOT NULL, video TEXT NOT NULL,
        position INTEGER NOT NULL, mode INTEGER NOT NULL, explanation_json TEXT NOT NULL,
        rank_us INTEGER NOT NULL, PRIMARY KEY (viewer, item_id));
    CREATE TABLE live_engagement (
        creator TEXT NOT NULL, live TEXT NOT NULL, joins INTEGER NOT NULL, view_seconds REAL NOT NULL,
        chats INTEGER NOT NULL, gifts INTEGER NOT NULL, velocity REAL NOT NULL, update_us INTEGER NOT NULL,
        PRIMARY KEY (creator, live));
"""

# Signals replay in the order they were recorded (`history`): SQLite's rowid gave that order, and
# PostgreSQL has none, so the order becomes a column of its own on both (SQLite keeps the rowid's
# values: an INTEGER PRIMARY KEY is the rowid).
_SIGNAL_ORDER = """
    ALTER TABLE signals RENAME TO signals_v1;
    DROP INDEX signals_by_viewer;
    CREATE TABLE signals (
        seq INTEGER PRIMARY KEY,
        event_id TEXT NOT NULL UNIQUE, viewer TEXT NOT NULL, kind INTEGER NOT NULL, target TEXT NOT NULL,
        occur_us INTEGER NOT NULL, watch_us INTEGER NOT NULL, report_reason INTEGER NOT NULL,
        report_details_sealed BLOB, discount_reason TEXT NOT NULL, record_us INTEGER NOT NULL);
    INSERT INTO signals SELECT rowid, * FROM signals_v1 ORDER BY rowid;
    DROP TABLE signals_v1;
    CREATE INDEX signals_by_viewer ON signals (viewer, record_us);
"""

MIGRATIONS = [
    Migration(1, _SCHEMA_V1, postgres="""
    CREATE TABLE candidates (
        creator TEXT NOT NULL, video TEXT NOT NULL,
        duration_us BIGINT NOT NULL CHECK (duration_us > 0),
        hashtags_json TEXT NOT NULL, labels_json TEXT NOT NULL,
        commercial BIGINT NOT NULL, language_code TEXT NOT NULL, region_code TEXT NOT NULL,
        unsuitable_for_minors BIGINT NOT NULL, ad TEXT NOT NULL,
        publish_us BIGINT NOT NULL, register_us BIGINT NOT NULL,
        stage BIGINT NOT NULL, removed_reason BIGINT, counts_json TEXT NOT NULL,
        PRIMARY KEY (creator, video));
    CREATE TABLE signals (
        event_id TEXT PRIMARY KEY, viewer TEXT NOT NULL, kind BIGINT NOT NULL, target TEXT NOT NULL,
        occur_us BIGINT NOT NULL, watch_us BIGINT NOT NULL, report_reason BIGINT NOT NULL,
        report_details_sealed BYTEA, discount_reason TEXT NOT NULL, record_us BIGINT NOT NULL);
    CREATE INDEX signals_by_viewer ON signals (viewer, record_us);
    CREATE TABLE follows (
        follower TEXT NOT NULL, creator TEXT NOT NULL, create_us BIGINT NOT NULL,
        PRIMARY KEY (follower, creator));
    CREATE INDEX follows_by_creator ON follows (creator, create_us);
    CREATE TABLE flagged_accounts (account TEXT PRIMARY KEY, flag_us BIGINT NOT NULL);
    CREATE TABLE feed_settings (account TEXT PRIMARY KEY, default_mode BIGINT, update_us BIGINT NOT NULL);
    CREATE TABLE feed_items (
        viewer TEXT NOT NULL, item_id TEXT NOT NULL, creator TEXT NOT NULL, video TEXT NOT NULL,
        position BIGINT NOT NULL, mode BIGINT NOT NULL, explanation_json TEXT NOT NULL,
        rank_us BIGINT NOT NULL, PRIMARY KEY (viewer, item_id));
    CREATE TABLE live_engagement (
        creator TEXT NOT NULL, live TEXT NOT NULL, joins BIGINT NOT NULL, view_seconds DOUBLE PRECISION NOT NULL,
        chats BIGINT NOT NULL, gifts BIGINT NOT NULL, velocity DOUBLE PRECISION NOT NULL, update_us BIGINT NOT NULL,
        PRIMARY KEY (creator, live));
"""),
    # Identity values are handed out under the store's writer lock, so their order is the commit order.
    Migration(2, _SIGNAL_ORDER, postgres="""
    ALTER TABLE signals ADD COLUMN seq BIGINT GENERATED BY DEFAULT AS IDENTITY UNIQUE;
"""),
]

_SIGNAL_COLUMNS = ("event_id, viewer, kind, target, occur_us, watch_us, report_reason, report_details_sealed,"
                   " discount_reason, record_us")


@dataclass(frozen=True)
class HistoryRow:
    viewer: str
    target: str
    kind: SignalKind
    watch_seconds: float


@dataclass(frozen=True)
class Loaded:
    candidates: list[Candidate]
    follows: list[Follow]
    flagged: set[str]
    settings: dict[str, FeedSettings]
    live: dict[str, LiveEngagement]


class RankingStore:
    """Satisfies `usecases.RankingStore`."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._committer = GroupCommitter(database, name="ranking-commit")

    @classmethod
    def open(cls, data_root: Path) -> RankingStore:
        """SQLite: `<data_root>/ranking/ranking.db`; PostgreSQL (`LIMELIGHT_DATABASE_URL`): the schema `ranking`."""
        return cls(open_database("ranking", MIGRATIONS, root=data_root))

    def close(self) -> None:
        self._committer.close()
        self._database.close()

    # -- candidates ------------------------------------------------------------------------

    async def put_candidate(self, candidate: Candidate) -> None:
        await self._committer.run(lambda tx: _put_candidates(tx, [candidate]))

    def put_candidates_now(self, candidates: Sequence[Candidate]) -> None:
        """Bulk load outside the committer (benchmark seeding, from a thread)."""
        self._committer.submit(lambda tx: _put_candidates(tx, candidates)).result()

    # -- signals -----------------------------------------------------------------------------

    async def known_event_ids(self, event_ids: Sequence[str]) -> set[str]:
        def read() -> set[str]:
            with self._database.reading() as connection:
                marks = ",".join("?" * len(event_ids))
                return {row[0] for row in connection.execute(
                    f"SELECT event_id FROM signals WHERE event_id IN ({marks})", list(event_ids))}
        return await asyncio.to_thread(read) if event_ids else set()

    async def record_signals(self, signals: Sequence[StoredSignal], counted: Sequence[Candidate],
                             flagged: Sequence[str], live_updates: Sequence[LiveEngagement]) -> None:
        def work(tx: Transaction) -> None:
            _insert_signals(tx, signals)
            _put_candidates(tx, counted)
            for account in flagged:
                tx.execute("INSERT INTO flagged_accounts VALUES (?, ?) ON CONFLICT (account) DO NOTHING",
                           (account, epoch_us(signals[0].record_time) if signals else 0))
            for live in live_updates:
                tx.execute("INSERT INTO live_engagement VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (creator, live)"
                           " DO UPDATE SET joins = excluded.joins, view_seconds = excluded.view_seconds,"
                           " chats = excluded.chats, gifts = excluded.gifts, velocity = excluded.velocity,"
                           " update_us = excluded.update_us",
                           (live.creator, live.live, live.joins, live.view_seconds, live.chats, live.gifts,
                            live.velocity, epoch_us(live.update_time) if live.update_time else 0))
        await self._committer.run(work)

    def insert_signals_now(self, signals: Sequence[StoredSignal]) -> None:
        self._committer.submit(lambda tx: _insert_signals(tx, signals)).result()

    async def live_engagement(self, creator: str, live: str) -> LiveEngagement | None:
        def read() -> LiveEngagement | None:
            with self._database.reading() as connection:
                row = connection.execute("SELECT joins, view_seconds, chats, gifts, velocity, update_us"
                                         " FROM live_engagement WHERE creator = ? AND live = ?",
                                         (creator, live)).fetchone()
            return None if row is None else LiveEngagement(creator, live, row[0], row[1], row[2], row[3], row[4],
                                                           from_epoch_us(row[5]))
        return await asyncio.to_thread(read)

    # -- follows -----------------------------------------------------------------------------

    async def put_follow(self, follow: Follow) -> Follow:
        def work(tx: Transaction) -> Follow:
            tx.execute("INSERT INTO follows VALUES (?, ?, ?) ON CONFLICT (follower, creator) DO NOTHING",
                       (follow.follower, follow.creator, epoch_us(follow.create_time)))
            row = tx.execute("SELECT create_us FROM follows WHERE follower = ? AND creator = ?",
                             (follow.follower, follow.creator)).fetchone()
            return dataclasses.replace(follow, create_time=from_epoch_us(row[0]))
        return await self._committer.run(work)

    def put_follows_now(self, follows: Sequence[Follow]) -> None:
        self._committer.submit(lambda tx: tx.executemany(
            "INSERT INTO follows VALUES (?, ?, ?) ON CONFLICT (follower, creator) DO NOTHING",
            [(f.follower, f.creator, epoch_us(f.create_time)) for f in follows])).result()

    async def delete_follow(self, follower: str, creator: str) -> bool:
        return await self._committer.run(lambda tx: tx.execute(
            "DELETE FROM follows WHERE follower = ? AND creator = ?", (follower, creator)).rowcount > 0)

    async def followers(self, creator: str, *, before: tuple[int, str] | None, limit: int) -> list[Follow]:
        return await self._follows("creator", "follower", creator, before, limit)

    async def following(self, user: str, *, before: tuple[int, str] | None, limit: int) -> list[Follow]:
        return await self._follows("follower", "creator", user, before, limit)

    async def _follows(self, key: str, other: str, value: str, before: tuple[int, str] | None,
                       limit: int) -> list[Follow]:
        def read() -> list[Follow]:
            where, parameters = f"{key} = ?", [value]
            if before is not None:
                where += f" AND (create_us < ? OR (create_us = ? AND {other} < ?))"
                parameters += [before[0], before[0], before[1]]  # type: ignore[list-item]
            with self._database.reading() as connection:
                rows = connection.execute(
                    f"SELECT follower, creator, create_us FROM follows WHERE {where}"
                    f" ORDER BY create_us DESC, {other} DESC LIMIT ?", [*parameters, limit]).fetchall()
            return [Follow(row[0], row[1], from_epoch_us(row[2])) for row in rows]
        return await asyncio.to_thread(read)

    # -- settings and feed items ----------------------------------------------------------------

    async def put_feed_settings(self, settings: FeedSettings) -> None:
        await self._committer.run(lambda tx: tx.execute(
            "INSERT INTO feed_settings VALUES (?, ?, ?) ON CONFLICT (account)"
            " DO UPDATE SET default_mode = excluded.default_mode, update_us = excluded.update_us",
            (settings.user, int(settings.default_mode) if settings.default_mode else None,
             epoch_us(settings.update_time) if settings.update_time else 0)))

    async def record_page(self, items: Sequence[ShownItem], shown: Sequence[Candidate]) -> None:
        def work(tx: Transaction) -> None:
            tx.executemany("INSERT INTO feed_items VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
                (item.viewer, item.item_id, item.creator, item.video, item.position, int(item.mode),
                 json.dumps(_explanation(item)), epoch_us(item.rank_time)) for item in items])
            for candidate in shown:  # impressions move exposure stages: keep them
                tx.execute("UPDATE candidates SET counts_json = ?, stage = ? WHERE creator = ? AND video = ?",
                           (json.dumps(dataclasses.asdict(candidate.counts)), int(candidate.stage),
                            candidate.registration.creator, candidate.registration.video))
        await self._committer.run(work)

    async def shown_item(self, viewer: str, item_id: str) -> ShownItem | None:
        def read() -> ShownItem | None:
            with self._database.reading() as connection:
                row = connection.execute(
                    "SELECT creator, video, position, mode, explanation_json, rank_us FROM feed_items"
                    " WHERE viewer = ? AND item_id = ?", (viewer, item_id)).fetchone()
            if row is None:
                return None
            explanation = json.loads(row[4])
            return ShownItem(
                item_id=item_id, viewer=viewer, creator=row[0], video=row[1], position=row[2], mode=FeedMode(row[3]),
                sources=tuple(Source(s) for s in explanation["sources"]), predictions=explanation["predictions"],
                contributions=explanation["contributions"],
                adjustments=tuple(Adjustment(a["parameter"], a["multiplier"], a["description"])
                                  for a in explanation["adjustments"]),
                score=explanation["score"], labels=tuple(explanation["labels"]), commercial=explanation["commercial"],
                ad=explanation["ad"], rank_time=from_epoch_us(row[5]))
        return await asyncio.to_thread(read)

    # -- start --------------------------------------------------------------------------------

    def load(self) -> Loaded:
        with self._database.reading() as connection:
            candidates = [_candidate(row) for row in connection.execute(
                "SELECT creator, video, duration_us, hashtags_json, labels_json, commercial, language_code,"
                " region_code, unsuitable_for_minors, ad, publish_us, register_us, stage, removed_reason,"
                " counts_json FROM candidates ORDER BY register_us, creator, video")]
            follows = [Follow(row[0], row[1], from_epoch_us(row[2])) for row in connection.execute(
                "SELECT follower, creator, create_us FROM follows")]
            flagged = {row[0] for row in connection.execute("SELECT account FROM flagged_accounts")}
            settings = {row[0]: FeedSettings(row[0], FeedMode(row[1]) if row[1] else None, from_epoch_us(row[2]))
                        for row in connection.execute("SELECT account, default_mode, update_us FROM feed_settings")}
            live = {f"{row[0]}/{row[1]}": LiveEngagement(row[0], row[1], row[2], row[3], row[4], row[5], row[6],
                                                         from_epoch_us(row[7]))
                    for row in connection.execute("SELECT * FROM live_engagement")}
        return Loaded(candidates, follows, flagged, settings, live)

    def history(self) -> Iterator[HistoryRow]:
        """Every counted signal on a video, oldest first (rebuilds viewer embeddings; trains)."""
        with self._database.reading() as connection:
            for row in connection.execute(
                    "SELECT viewer, target, kind, watch_us FROM signals WHERE discount_reason = ''"
                    " AND kind < ? ORDER BY record_us, seq", (int(SignalKind.LIVE_JOIN),)):
                yield HistoryRow(row[0], row[1], SignalKind(row[2]), row[3] / 1e6)

    # -- the data subject ---------------------------------------------------------------------------

    async def subject_records(self, user: str) -> dict[str, list[dict[str, object]]]:
        def read() -> dict[str, list[dict[str, object]]]:
            with self._database.reading() as connection:
                signals = [{"event_id": r[0], "type": SignalKind(r[1]).name, "target": r[2],
                            "occur_time": from_epoch_us(r[3]).isoformat(), "watch_seconds": r[4] / 1e6,
                            "report_reason": r[5], "report_details_sealed": r[6], "discounted_as": r[7]}
                           for r in connection.execute(
                               "SELECT event_id, kind, target, occur_us, watch_us, report_reason,"
                               " report_details_sealed, discount_reason FROM signals WHERE viewer = ?"
                               " ORDER BY record_us", (user,))]
                follows = [{"creator": r[0], "create_time": from_epoch_us(r[1]).isoformat()}
                           for r in connection.execute(
                               "SELECT creator, create_us FROM follows WHERE follower = ?", (user,))]
                settings = [{"default_mode": FeedMode(r[0]).name if r[0] else "UNSPECIFIED"}
                            for r in connection.execute(
                                "SELECT default_mode FROM feed_settings WHERE account = ?", (user,))]
                items = [{"item_id": r[0], "video": f"creators/{r[1]}/videos/{r[2]}",
                          "rank_time": from_epoch_us(r[3]).isoformat()}
                         for r in connection.execute(
                             "SELECT item_id, creator, video, rank_us FROM feed_items WHERE viewer = ?", (user,))]
            return {"signals": signals, "follows": follows, "feed_settings": settings, "feed_items": items}
        return await asyncio.to_thread(read)

    async def erase_subject(self, user: str) -> dict[str, int]:
        def work(tx: Transaction) -> dict[str, int]:
            return {
                "signals": tx.execute("DELETE FROM signals WHERE viewer = ?", (user,)).rowcount,
                "follows": tx.execute("DELETE FROM follows WHERE follower = ? OR creator = ?",
                                      (user, user)).rowcount,
                "feed_settings": tx.execute("DELETE FROM feed_settings WHERE account = ?", (user,)).rowcount,
                "feed_items": tx.execute("DELETE FROM feed_items WHERE viewer = ?", (user,)).rowcount,
                "flagged_accounts": tx.execute("DELETE FROM flagged_accounts WHERE account = ?", (user,)).rowcount,
            }
        return await self._committer.run(work)


_CANDIDATE_FIELDS = ("duration_us", "hashtags_json", "labels_json", "commercial", "language_code", "region_code",
                     "unsuitable_for_minors", "ad", "publish_us", "register_us", "stage", "removed_reason",
                     "counts_json")
_PUT_CANDIDATE = ("INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                  " ON CONFLICT (creator, video) DO UPDATE SET "
                  + ", ".join(f"{name} = excluded.{name}" for name in _CANDIDATE_FIELDS))


def _put_candidates(tx: Transaction, candidates: Sequence[Candidate]) -> None:
    tx.executemany(_PUT_CANDIDATE, [
        (r.creator, r.video, int(r.duration.total_seconds() * 1e6), json.dumps(list(r.hashtags)),
         json.dumps(list(r.labels)), int(r.commercial), r.language, r.region, int(r.unsuitable_for_minors), r.ad,
         epoch_us(r.publish_time), epoch_us(c.register_time), int(c.stage),
         int(c.removed) if c.removed is not None else None, json.dumps(dataclasses.asdict(c.counts)))
        for c in candidates for r in (c.registration,)])


def _insert_signals(tx: Transaction, signals: Sequence[StoredSignal]) -> None:
    tx.executemany(f"INSERT INTO signals ({_SIGNAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                   " ON CONFLICT (event_id) DO NOTHING", [
        (s.event_id, s.viewer, int(s.kind), s.target, epoch_us(s.occur_time), int(s.watch_seconds * 1e6),
         s.report_reason, s.report_details_sealed, s.discount_reason, epoch_us(s.record_time)) for s in signals])


def _candidate(row: tuple[object, ...]) -> Candidate:
    (creator, video, duration_us, hashtags, labels, commercial, language, region, unsuitable, ad, publish_us,
     register_us, stage, removed, counts) = row
    registration = VideoRegistration(
        str(creator), str(video), dt.timedelta(microseconds=int(str(duration_us))), tuple(json.loads(str(hashtags))),
        tuple(json.loads(str(labels))), bool(commercial), str(language), str(region),
        from_epoch_us(int(str(publish_us))), bool(unsuitable), str(ad))
    return Candidate(registration, from_epoch_us(int(str(register_us))), ExposureStage(int(str(stage))),
                     EngagementCounts(**json.loads(str(counts))),
                     removed=RemovalReason(int(str(removed))) if removed is not None else None)


def _explanation(item: ShownItem) -> dict[str, object]:
    return {"sources": [s.value for s in item.sources], "predictions": item.predictions,
            "contributions": item.contributions, "score": item.score, "labels": list(item.labels),
            "commercial": item.commercial, "ad": item.ad,
            "adjustments": [dataclasses.asdict(a) for a in item.adjustments]}
