"""Ranking's store on both engines: what one write means, the order signals replay in, and what the schema refuses."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from libs.storage.database import IntegrityError, open_database
from libs.timestamps import epoch_us
from services.ranking.model import (
    Candidate,
    EngagementCounts,
    ExposureStage,
    FeedMode,
    FeedSettings,
    Follow,
    LiveEngagement,
    RemovalReason,
    SignalKind,
    StoredSignal,
    VideoRegistration,
)
from services.ranking.store import MIGRATIONS, HistoryRow, RankingStore

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)


@pytest.fixture
def store(tmp_path: Path, database_engine: str) -> Iterator[RankingStore]:
    opened = RankingStore.open(tmp_path)
    yield opened
    opened.close()


def candidate(video: str = "v1", **changes: object) -> Candidate:
    registration = VideoRegistration("bea", video, dt.timedelta(seconds=30), ("dance",), ("Werbung",), True, "de", "DE",
                                     T0, unsuitable_for_minors=True, ad="ads/a1")
    return dataclasses.replace(Candidate(registration, T0), **changes)  # type: ignore[arg-type]


def signal(event_id: str, target: str = "bea/v1", *, kind: SignalKind = SignalKind.WATCH, at: dt.datetime = T0,
           discounted: str = "") -> StoredSignal:
    return StoredSignal(event_id, "ana", kind, target, at, 12.5, 0, None, discounted, at)


async def test_a_candidate_written_again_replaces_its_counts_stage_and_removal(store: RankingStore) -> None:
    await store.put_candidate(candidate())
    await store.put_candidate(candidate(stage=ExposureStage.BROAD, counts=EngagementCounts(views=3, watch_seconds=1.5),
                                        removed=RemovalReason.COMPLIANCE_HOLD))
    [loaded] = store.load().candidates
    assert loaded == candidate(stage=ExposureStage.BROAD, counts=EngagementCounts(views=3, watch_seconds=1.5),
                               removed=RemovalReason.COMPLIANCE_HOLD)


async def test_a_signal_is_kept_once_per_event_id_and_replays_in_the_order_it_was_recorded(
    store: RankingStore,
) -> None:
    # One batch shares its record time: the order within it is the order it was written in.
    await store.record_signals([signal("e-z", "bea/v2"), signal("e-a", "bea/v1"),
                                signal("e-m", "bea/v3", discounted="BURST")], [], ["ana"], [])
    await store.record_signals([signal("e-a", "bea/v9"), signal("e-b", "bea/v4", at=T0 - dt.timedelta(seconds=1))],
                               [], ["ana"], [])
    assert await store.known_event_ids(["e-a", "e-b", "e-m", "e-new"]) == {"e-a", "e-b", "e-m"}
    assert list(store.history()) == [HistoryRow("ana", "bea/v4", SignalKind.WATCH, 12.5),
                                     HistoryRow("ana", "bea/v2", SignalKind.WATCH, 12.5),
                                     HistoryRow("ana", "bea/v1", SignalKind.WATCH, 12.5)]
    assert store.load().flagged == {"ana"}


async def test_follows_keep_their_first_time_and_page_newest_first(store: RankingStore) -> None:
    for minute, follower in enumerate(["ana", "ben", "cem"]):
        await store.put_follow(Follow(follower, "bea", T0 + dt.timedelta(minutes=minute)))
    again = await store.put_follow(Follow("ana", "bea", T0 + dt.timedelta(days=1)))
    assert again.create_time == T0
    first = await store.followers("bea", before=None, limit=2)
    assert [f.follower for f in first] == ["cem", "ben"]
    rest = await store.followers("bea", before=(epoch_us(first[-1].create_time), first[-1].follower), limit=2)
    assert [f.follower for f in rest] == ["ana"]
    assert await store.delete_follow("ana", "bea") and not await store.delete_follow("ana", "bea")
    assert [f.creator for f in await store.following("ben", before=None, limit=10)] == ["bea"]


async def test_settings_and_live_engagement_are_replaced_by_the_latest(store: RankingStore) -> None:
    await store.put_feed_settings(FeedSettings("ana", FeedMode.NON_PERSONALISED, T0))
    await store.put_feed_settings(FeedSettings("ana", None, T0 + dt.timedelta(seconds=1)))
    live = LiveEngagement("bea", "l1", 1, 30.0, 2, 0, 0.5, T0)
    await store.record_signals([], [], [], [live])
    await store.record_signals([], [], [], [dataclasses.replace(live, joins=2, view_seconds=90.25, velocity=1.75)])
    loaded = store.load()
    assert loaded.settings == {"ana": FeedSettings("ana", None, T0 + dt.timedelta(seconds=1))}
    assert await store.live_engagement("bea", "l1") == dataclasses.replace(live, joins=2, view_seconds=90.25,
                                                                           velocity=1.75)
    assert loaded.live == {"bea/l1": dataclasses.replace(live, joins=2, view_seconds=90.25, velocity=1.75)}


async def test_erasing_a_viewer_removes_what_their_export_shows(store: RankingStore) -> None:
    await store.record_signals([signal("e1")], [], ["ana"], [])
    await store.put_follow(Follow("ana", "bea", T0))
    await store.put_feed_settings(FeedSettings("ana", FeedMode.PERSONALISED, T0))
    exported = await store.subject_records("ana")
    assert [len(exported[section]) for section in ("signals", "follows", "feed_settings")] == [1, 1, 1]
    erased = await store.erase_subject("ana")
    assert erased == {"signals": 1, "follows": 1, "feed_settings": 1, "feed_items": 0, "flagged_accounts": 1}
    assert all(not records for records in (await store.subject_records("ana")).values())


async def test_the_schema_refuses_a_video_without_duration_and_a_second_row_for_one_event(store: RankingStore) -> None:
    with pytest.raises(IntegrityError):
        await store.put_candidate(candidate(registration=dataclasses.replace(candidate().registration,
                                                                              duration=dt.timedelta(0))))
    store.insert_signals_now([signal("e1")])
    with pytest.raises(IntegrityError), store._database.transaction() as tx:
        tx.execute("INSERT INTO signals (event_id, viewer, kind, target, occur_us, watch_us, report_reason,"
                   " discount_reason, record_us) VALUES ('e1', 'eve', 1, 'bea/v1', 1, 1, 0, '', 1)")
    assert store.load().candidates == []


async def test_signals_recorded_before_the_order_column_replay_in_their_old_order(
    tmp_path: Path, database_engine: str,
) -> None:
    old = open_database("ranking", MIGRATIONS[:1], root=tmp_path)
    with old.transaction() as tx:
        for event_id, target in [("e-z", "bea/v2"), ("e-a", "bea/v1")]:
            tx.execute("INSERT INTO signals VALUES (?, 'ana', 1, ?, 1, 2000000, 0, NULL, '', 1)", (event_id, target))
    old.close()
    store = RankingStore.open(tmp_path)
    try:
        store.insert_signals_now([signal("e-new", "bea/v3", at=dt.datetime.fromtimestamp(1e-6, dt.UTC))])
        assert [row.target for row in store.history()] == ["bea/v2", "bea/v1", "bea/v3"]
    finally:
        store.close()
