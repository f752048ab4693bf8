"""Fraud rules against a naive in-memory history, and the store's queries against the same reference."""

from __future__ import annotations

import datetime as dt
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.gifts.model.fraud import Assessment, FraudPolicy, Verdict, assess_gift
from services.gifts.model.live import LiveSession
from services.gifts.model.records import SentGift
from services.gifts.providers import deployment_events
from services.gifts.store.unit import LedgerUnitOfWork
from services.gifts.store.writer import GiftsStore

TICK = dt.timedelta(microseconds=1)
MINUTE = dt.timedelta(minutes=1)
DAY = dt.timedelta(days=1)
NOW = dt.datetime(1971, 2, 5, tzinfo=dt.UTC)
VETERAN = NOW - 365 * DAY


@dataclass
class NaiveHistory:
    """The reference: a list of (sender, recipient, sent at, coins), searched by brute force."""

    gifts: list[tuple[str, str, dt.datetime, int]] = field(default_factory=list)

    def gifts_sent_since(self, sender: str, since: dt.datetime) -> tuple[int, int]:
        mine = [coins for who, _, at, coins in self.gifts if who == sender and at > since]
        return len(mine), sum(mine)

    def gifting_path_exists(self, from_user: str, to_user: str, max_hops: int, since: dt.datetime) -> bool:
        frontier = {from_user}
        for _ in range(max_hops):
            frontier = {to for who, to, at, _ in self.gifts if who in frontier and at > since}
            if to_user in frontier:
                return True
        return False


def _assess(history: NaiveHistory, sender: str = "ann", recipient: str = "ben", coins: int = 10,
            joined: dt.datetime = VETERAN, policy: FraudPolicy | None = None) -> Assessment:
    return assess_gift(history, policy or FraudPolicy(), sender=sender, recipient=recipient, coins=coins, now=NOW,
                       sender_joined_at=joined)


def test_an_ordinary_gift_is_allowed() -> None:
    assert _assess(NaiveHistory()) == Assessment(Verdict.ALLOW)


def test_self_gifting_is_rejected() -> None:
    assert _assess(NaiveHistory(), recipient="ann") == Assessment(Verdict.REJECT, ("SELF_GIFTING",))


def test_velocity_counts_only_the_window() -> None:
    policy = FraudPolicy(max_gifts_per_window=2)
    history = NaiveHistory([("ann", "ben", NOW - MINUTE, 1), ("ann", "ben", NOW - 1 * TICK, 1)])
    assert _assess(history, policy=policy).verdict is Verdict.ALLOW  # the first is exactly a minute old
    history.gifts.append(("ann", "cat", NOW - 2 * TICK, 1))
    assert _assess(history, policy=policy) == Assessment(Verdict.REJECT, ("GIFT_VELOCITY_EXCEEDED",))


def test_a_gift_back_to_a_recent_giver_is_held_as_circular() -> None:
    history = NaiveHistory([("ben", "ann", NOW - DAY // 2, 5)])
    assert _assess(history) == Assessment(Verdict.HOLD, ("CIRCULAR_GIFTING",))


def test_a_ring_of_three_is_held_but_of_four_is_not_by_default() -> None:
    three = NaiveHistory([("ben", "cat", NOW - 10 * TICK, 5), ("cat", "ann", NOW - 10 * TICK, 5)])
    assert _assess(three).reasons == ("CIRCULAR_GIFTING",)
    four = NaiveHistory([("ben", "cat", NOW - 10 * TICK, 5), ("cat", "dan", NOW - 10 * TICK, 5), ("dan", "ann", NOW - 10 * TICK, 5)])
    assert _assess(four).verdict is Verdict.ALLOW


def test_old_gifts_do_not_make_a_ring() -> None:
    assert _assess(NaiveHistory([("ben", "ann", NOW - DAY, 5)])).verdict is Verdict.ALLOW


def test_a_new_account_is_held_once_its_day_adds_up_to_a_large_amount() -> None:
    history = NaiveHistory([("ann", "cat", NOW - 10 * TICK, 4_000)])
    new = NOW - DAY
    assert _assess(history, coins=999, joined=new).verdict is Verdict.ALLOW
    assert _assess(history, coins=1_000, joined=new) == Assessment(Verdict.HOLD, ("NEW_ACCOUNT_LARGE_AMOUNT",))
    assert _assess(history, coins=1_000).verdict is Verdict.ALLOW


def test_every_hold_reason_is_stated() -> None:
    history = NaiveHistory([("ben", "ann", NOW - 10 * TICK, 5)])
    assert _assess(history, coins=5_000, joined=NOW).reasons == ("CIRCULAR_GIFTING", "NEW_ACCOUNT_LARGE_AMOUNT")


USERS = ("u0", "u1", "u2", "u3", "u4")
edges = st.lists(st.tuples(st.sampled_from(USERS), st.sampled_from(USERS),
                           st.integers(0, 2 * DAY // TICK).map(lambda us: NOW - us * TICK), st.integers(1, 50)).filter(lambda e: e[0] != e[1]),
                 max_size=12)


def _record(uow: LedgerUnitOfWork, gifts: list[tuple[str, str, dt.datetime, int]]) -> None:
    for index, (sender, recipient, at, coins) in enumerate(gifts):
        live_id = f"live-{recipient}"
        if uow.live(live_id) is None:
            uow.insert_live(LiveSession(live_id, recipient, "t", VETERAN, NOW + DAY, ""))
        uow.claim_request(f"r{index}", "SendGift", sender, {}, at)
        uow.insert_gift(SentGift(f"g{index}", f"r{index}", live_id, sender, recipient, "rose", 1, coins, 0, 0, at, ""))


@settings(max_examples=60, deadline=None)
@given(gifts=edges, start=st.sampled_from(USERS), goal=st.sampled_from(USERS), hops=st.integers(1, 3),
       window=st.integers(0, 2 * DAY // TICK).map(lambda us: us * TICK))
def test_the_store_answers_history_questions_like_the_naive_reference(
        gifts: list[tuple[str, str, dt.datetime, int]], start: str, goal: str, hops: int, window: dt.timedelta) -> None:
    naive = NaiveHistory(gifts)
    with tempfile.TemporaryDirectory() as directory:
        store = GiftsStore(events=deployment_events(Path(directory)), root=Path(directory), synchronous="OFF")
        try:
            def ask(uow: LedgerUnitOfWork) -> tuple[bool, tuple[int, int]]:
                _record(uow, gifts)
                return (uow.gifting_path_exists(start, goal, hops, NOW - window),
                        uow.gifts_sent_since(start, NOW - window))

            path, sent = store.submit(ask).result()
        finally:
            store.close()
    assert path == naive.gifting_path_exists(start, goal, hops, NOW - window)
    assert sent == naive.gifts_sent_since(start, NOW - window)


def test_a_ring_has_at_least_two_members() -> None:
    with pytest.raises(ValueError):
        FraudPolicy(max_ring_size=1)
