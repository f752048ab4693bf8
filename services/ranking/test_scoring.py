"""The multi-task scorer: numpy and torch agree; the published weights order engagements as BRIEF says."""

from __future__ import annotations

import numpy as np

from services.ranking.scoring import FEATURES, TASK_WEIGHTS, Feature, Task, TaskHeads, score_numpy, score_torch


def test_torch_scores_equal_numpy_scores_within_float32_tolerance() -> None:
    features = np.random.default_rng(3).normal(size=(4096, FEATURES)).astype(np.float32)
    heads = TaskHeads()
    expected, actual = score_numpy(features, heads), score_torch(features, heads, device="cpu")
    np.testing.assert_allclose(actual.predictions, expected.predictions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(actual.values, expected.values, rtol=1e-4, atol=1e-4)


def test_deep_engagement_outweighs_likes_and_negative_feedback_outweighs_everything() -> None:
    assert TASK_WEIGHTS[Task.COMMENT] > TASK_WEIGHTS[Task.LIKE] and TASK_WEIGHTS[Task.SHARE] > TASK_WEIGHTS[Task.LIKE]
    assert abs(TASK_WEIGHTS[Task.NEGATIVE]) > sum(w for w in TASK_WEIGHTS.values() if w > 0)


def test_a_video_people_reject_scores_below_one_they_complete() -> None:
    liked, rejected = np.zeros((1, FEATURES), np.float32), np.zeros((1, FEATURES), np.float32)
    liked[0, Feature.COMPLETION_RATE] = 0.9
    rejected[0, Feature.NEGATIVE_RATE] = 0.5
    scores = score_numpy(np.vstack([liked, rejected]), TaskHeads())
    assert scores.values[0] > scores.values[1]
