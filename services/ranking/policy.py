"""Policy after scoring: staged exposure, freshness, author and topic diversity, minors, holds.

Pure functions over plain values; each adjustment is returned with its reason, so
ExplainFeedItem can say which policy moved an item.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from services.ranking.model import Adjustment, EngagementCounts, ExposureStage


@dataclass(frozen=True)
class ExposurePolicy:
    # Share of viewers who may see a video in each stage (a stable hash of viewer and video).
    cohort_share: float = 0.2
    expanded_share: float = 0.6
    # Impressions a stage needs before its velocity is judged.
    cohort_impressions: int = 50
    expanded_impressions: int = 500
    # Engagement per impression that earns the next stage; below `demote_negative` negative
    # feedback per impression pushes it down.
    promote_velocity: float = 0.15
    demote_negative: float = 0.2
    demoted_multiplier: float = 0.2


@dataclass(frozen=True)
class PagePolicy:
    author_decay: float = 0.6  # the k-th repeat of an author in a page is multiplied by decay**k
    topic_decay: float = 0.85  # the same for a video's main hashtag
    fresh_boost: float = 0.5  # up to +50% for a video just published
    fresh_half_life: dt.timedelta = dt.timedelta(hours=12)


def velocity(counts: EngagementCounts, *, prior_impressions: float = 20.0) -> float:
    """Engagement per impression, shrunk toward 0 while impressions are few."""
    return counts.engagement() / (counts.impressions + prior_impressions)


def next_stage(stage: ExposureStage, counts: EngagementCounts, policy: ExposurePolicy) -> ExposureStage:
    impressions = max(counts.impressions, 1)
    if counts.negative() / impressions >= policy.demote_negative and counts.impressions >= policy.cohort_impressions:
        return ExposureStage.DEMOTED
    rate = velocity(counts)
    if stage is ExposureStage.COHORT and counts.impressions >= policy.cohort_impressions:
        return ExposureStage.EXPANDED if rate >= policy.promote_velocity else stage
    if stage is ExposureStage.EXPANDED and counts.impressions >= policy.expanded_impressions:
        return ExposureStage.BROAD if rate >= policy.promote_velocity else stage
    return stage


def stable_hash(name: str) -> int:
    """64 bits of BLAKE2b: the same in every process and replica."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")


def audience_mask(viewer: str, video_hashes: npt.NDArray[np.uint64], stages: npt.NDArray[np.int8],
                  policy: ExposurePolicy) -> npt.NDArray[np.bool_]:
    """Whether this viewer is in each video's current pool: a stable hash of (viewer, video) under the
    stage's share of viewers (the same answer on every page, in every replica)."""
    mixed = video_hashes ^ np.uint64(stable_hash(viewer))
    mixed = (mixed ^ (mixed >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)  # splitmix64's finaliser
    mixed = (mixed ^ (mixed >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    mixed = mixed ^ (mixed >> np.uint64(31))
    fraction = (mixed >> np.uint64(11)).astype(np.float64) / float(2**53)
    share = np.where(stages == ExposureStage.COHORT, policy.cohort_share,
                     np.where(stages == ExposureStage.EXPANDED, policy.expanded_share, 1.0))
    return np.asarray(fraction < share)


def exposure_adjustment(stage: ExposureStage, policy: ExposurePolicy) -> Adjustment | None:
    if stage is ExposureStage.DEMOTED:
        return Adjustment("negative_feedback", policy.demoted_multiplier,
                          "Many viewers chose 'not interested' or reported it, so it is shown less")
    if stage is ExposureStage.COHORT:
        return Adjustment("new_video_exposure", 1.0, "It is new: a small group of viewers sees it first")
    return None


def freshness(publish_time: dt.datetime, now: dt.datetime, policy: PagePolicy) -> float:
    """exp(-age / half-life) in [0, 1]."""
    age = max((now - publish_time).total_seconds(), 0.0)
    return math.exp(-age * math.log(2) / policy.fresh_half_life.total_seconds())


def freshness_adjustment(fresh: float, policy: PagePolicy) -> Adjustment:
    return Adjustment("freshness", 1.0 + policy.fresh_boost * fresh,
                      "It was published recently" if fresh > 0.5 else "Its age counts slightly against it")


@dataclass(frozen=True)
class Ranked:
    """One scored candidate entering the page: its key, author, main topic and value."""

    key: str
    author: str
    topic: str
    value: float


def diversify(candidates: Sequence[Ranked], size: int, policy: PagePolicy) -> list[tuple[Ranked, float, int]]:
    """Greedy page: each pick multiplies the later items of the same author by `author_decay` and of
    the same topic by `topic_decay`. Returns (item, effective value, author repeats before it).

    Values may be negative (strongly predicted negative feedback); a multiplier < 1 then must
    push them further down, so it applies to the distance from min(0, the worst value).
    """
    if not candidates:
        return []
    floor = min(0.0, min(c.value for c in candidates))
    remaining = list(candidates)
    authors: dict[str, int] = {}
    topics: dict[str, int] = {}
    page: list[tuple[Ranked, float, int]] = []
    while remaining and len(page) < size:
        best_index, best_value = 0, -math.inf
        for index, candidate in enumerate(remaining):
            multiplier = policy.author_decay ** authors.get(candidate.author, 0)
            if candidate.topic:
                multiplier *= policy.topic_decay ** topics.get(candidate.topic, 0)
            value = floor + (candidate.value - floor) * multiplier
            if value > best_value:
                best_index, best_value = index, value
        chosen = remaining.pop(best_index)
        page.append((chosen, best_value, authors.get(chosen.author, 0)))
        authors[chosen.author] = authors.get(chosen.author, 0) + 1
        if chosen.topic:
            topics[chosen.topic] = topics.get(chosen.topic, 0) + 1
    return page


def diversity_adjustment(repeats: int, policy: PagePolicy) -> Adjustment | None:
    if repeats == 0:
        return None
    return Adjustment("diversity", policy.author_decay ** repeats,
                      f"This page already shows {repeats} video(s) by this creator, so it moved down")
