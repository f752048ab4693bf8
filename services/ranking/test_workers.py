"""Scoring on real Ray: the service's feed through a scoring actor, concurrent requests micro-batched."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import numpy as np
from limelight.ranking.v1 import feed_pb2

from services.ranking.config import RankingConfig
from services.ranking.conftest import start_ranking, stop_ranking
from services.ranking.scoring import FEATURES, TaskHeads, score_numpy
from services.ranking.workers import RayScorer


async def test_feeds_are_scored_on_ray_in_micro_batches(tmp_path: Path) -> None:
    harness = await start_ranking(tmp_path, dataclasses.replace(RankingConfig(), scorer="ray"))
    try:
        scorer = harness.service.scorer
        assert isinstance(scorer, RayScorer)
        features = np.random.default_rng(1).normal(size=(300, FEATURES)).astype(np.float32)
        on_ray = await scorer.score(features)
        np.testing.assert_allclose(on_ray.values, score_numpy(features, TaskHeads()).values, rtol=1e-5)
        for n in range(40):
            await harness.register(f"c{n}", "v1", hashtags=(f"t{n % 4}",))
        before = scorer.batcher.calls
        pages = await asyncio.gather(*(harness.feed.GetFeed(
            feed_pb2.GetFeedRequest(viewer=f"users/u{n}"), metadata=harness.auth(f"users/u{n}")) for n in range(48)))
        assert all(len(page.items) == 10 for page in pages)
        calls = scorer.batcher.calls - before
        assert calls < 48, f"{calls} actor calls for 48 feeds: not batched"
    finally:
        await stop_ranking(harness)
