"""Policy after scoring: diversity against a naive reference, staged exposure, freshness."""

from __future__ import annotations

import datetime as dt

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from services.ranking.model import EngagementCounts, ExposureStage
from services.ranking.policy import (
    ExposurePolicy,
    PagePolicy,
    Ranked,
    audience_mask,
    diversify,
    freshness,
    next_stage,
    stable_hash,
)


def naive_diversify(candidates: list[Ranked], size: int, policy: PagePolicy) -> list[str]:
    """Recompute every remaining value from scratch at each pick."""
    floor = min(0.0, min(c.value for c in candidates))
    page: list[Ranked] = []
    pool = list(candidates)
    while pool and len(page) < size:
        def value(c: Ranked) -> float:
            authors = sum(1 for p in page if p.author == c.author)
            topics = sum(1 for p in page if c.topic and p.topic == c.topic)
            return floor + (c.value - floor) * policy.author_decay ** authors * policy.topic_decay ** topics
        best = max(pool, key=lambda c: (value(c), -pool.index(c)))
        page.append(best)
        pool.remove(best)
    return [c.key for c in page]


@given(st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["", "x", "y"]),
                          st.floats(-50, 50, allow_nan=False)), min_size=1, max_size=12),
       st.integers(1, 8))
def test_diversify_matches_the_naive_reference(rows: list[tuple[str, str, float]], size: int) -> None:
    candidates = [Ranked(str(i), author, topic, value) for i, (author, topic, value) in enumerate(rows)]
    assert [c.key for c, _, _ in diversify(candidates, size, PagePolicy())] == naive_diversify(
        candidates, size, PagePolicy())


def test_a_repeated_author_moves_down() -> None:
    page = diversify([Ranked("a1", "a", "", 10.0), Ranked("a2", "a", "", 9.0), Ranked("b1", "b", "", 7.0)], 3,
                     PagePolicy())
    assert [c.key for c, _, _ in page] == ["a1", "b1", "a2"]


def test_engaging_new_videos_widen_and_rejected_ones_are_demoted() -> None:
    policy = ExposurePolicy()
    good = EngagementCounts(impressions=60, completions=30, likes=10)
    assert next_stage(ExposureStage.COHORT, good, policy) is ExposureStage.EXPANDED
    dull = EngagementCounts(impressions=60)
    assert next_stage(ExposureStage.COHORT, dull, policy) is ExposureStage.COHORT
    bad = EngagementCounts(impressions=60, not_interested=20)
    assert next_stage(ExposureStage.EXPANDED, bad, policy) is ExposureStage.DEMOTED


def test_a_cohort_is_a_stable_minority_of_viewers() -> None:
    policy = ExposurePolicy()
    videos = np.array([stable_hash(f"c/v{n}") for n in range(2000)], np.uint64)
    cohort = np.full(2000, ExposureStage.COHORT, np.int8)
    inside = audience_mask("ana", videos, cohort, policy)
    assert 0.15 < inside.mean() < 0.25
    assert (inside == audience_mask("ana", videos, cohort, policy)).all()
    assert not (inside == audience_mask("ben", videos, cohort, policy)).all()
    assert audience_mask("ana", videos, np.full(2000, ExposureStage.BROAD, np.int8), policy).all()


def test_freshness_halves_every_half_life() -> None:
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    policy = PagePolicy()
    assert abs(freshness(now - policy.fresh_half_life, now, policy) - 0.5) < 1e-9
