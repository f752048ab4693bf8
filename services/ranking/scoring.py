"""The multi-task scorer: features of (viewer, video) -> six predicted engagements -> one value.

Each task head is a logistic model over the same feature row; the value of an item is the
published weighted sum of its predicted engagements (BRIEF §4 Ranking: deep engagement above
likes, negative feedback strongly negative, with Twitter's published heavy-ranker weights as
the scale). The same arithmetic runs in numpy (CPU) and in torch (a GPU when the cluster has
one); `test_scoring.py` holds them equal within float32 tolerance.

Pure: numpy only at import; torch is imported by `score_torch` alone.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

Matrix = npt.NDArray[np.float32]


class Feature(enum.IntEnum):
    """Columns of a feature row, in order."""

    AFFINITY = 0  # the viewer's embedding against the video's (collaborative, standardised)
    TOPIC_AFFINITY = 1  # the viewer's hashtag and creator profile against the video's
    FOLLOWS_CREATOR = 2  # 1 when the viewer follows the creator
    COMPLETION_RATE = 3  # smoothed completions per view
    LIKE_RATE = 4  # smoothed likes per impression
    COMMENT_RATE = 5
    SHARE_RATE = 6  # shares and saves
    NEGATIVE_RATE = 7  # skips, "not interested" and reports per impression
    POPULARITY = 8  # log engagement, worldwide
    REGIONAL_POPULARITY = 9  # log engagement in the viewer's region
    FRESHNESS = 10  # exp(-age / half-life)
    CREATOR_AFFINITY = 11  # the viewer's decayed engagement with this creator


FEATURES = len(Feature)


class Task(enum.IntEnum):
    COMPLETION = 0
    LIKE = 1
    COMMENT = 2
    SHARE = 3
    FOLLOW = 4
    NEGATIVE = 5


TASKS = len(Task)

# The published value of each predicted engagement (GetRankingParameters lists them).
TASK_WEIGHTS: Mapping[Task, float] = {
    Task.COMPLETION: 1.0,
    Task.LIKE: 0.5,
    Task.COMMENT: 13.5,
    Task.SHARE: 11.0,
    Task.FOLLOW: 4.0,
    Task.NEGATIVE: -74.0,
}


def _default_coefficients() -> Matrix:
    """Prior head coefficients (features x tasks): which evidence predicts which engagement."""
    c = np.zeros((FEATURES, TASKS), dtype=np.float32)
    f, t = Feature, Task
    c[f.AFFINITY] = [1.2, 1.0, 0.8, 0.8, 0.6, -0.9]
    c[f.TOPIC_AFFINITY] = [0.6, 0.5, 0.4, 0.4, 0.3, -0.5]
    c[f.FOLLOWS_CREATOR] = [0.5, 0.6, 0.5, 0.3, 0.0, -0.4]
    c[f.COMPLETION_RATE, t.COMPLETION] = 2.5
    c[f.LIKE_RATE, t.LIKE] = 3.0
    c[f.COMMENT_RATE, t.COMMENT] = 4.0
    c[f.SHARE_RATE, t.SHARE] = 4.0
    c[f.NEGATIVE_RATE] = [-1.0, -1.0, -0.5, -0.5, -0.5, 3.0]
    c[f.POPULARITY] = [0.15, 0.15, 0.1, 0.1, 0.05, -0.05]
    c[f.REGIONAL_POPULARITY] = [0.1, 0.1, 0.05, 0.05, 0.05, 0.0]
    c[f.FRESHNESS] = [0.3, 0.2, 0.1, 0.1, 0.1, 0.0]
    c[f.CREATOR_AFFINITY] = [0.4, 0.4, 0.3, 0.2, 0.8, -0.3]
    return c


def _default_bias() -> Matrix:
    return np.array([-0.5, -2.5, -5.0, -5.0, -4.5, -4.5], dtype=np.float32)


@dataclass(frozen=True)
class TaskHeads:
    """The model: coefficients (features x tasks), biases, and the task weights."""

    coefficients: Matrix = field(default_factory=_default_coefficients)
    bias: Matrix = field(default_factory=_default_bias)
    weights: Matrix = field(default_factory=lambda: np.array([TASK_WEIGHTS[t] for t in Task], dtype=np.float32))


# The video's own statistics (popularity and per-impression engagement rates): a prior on the
# video whatever the viewer. Personalised pages weigh it by `CatalogueSettings.item_prior`.
ITEM_PRIOR_FEATURES = (Feature.POPULARITY, Feature.REGIONAL_POPULARITY, Feature.COMPLETION_RATE, Feature.LIKE_RATE,
                       Feature.COMMENT_RATE, Feature.SHARE_RATE)


@dataclass(frozen=True)
class Scores:
    """Per row: the predicted engagements (rows x tasks) and the value."""

    predictions: Matrix
    values: Matrix


def score_numpy(features: Matrix, heads: TaskHeads) -> Scores:
    logits = features @ heads.coefficients + heads.bias
    predictions = (1.0 / (1.0 + np.exp(-np.clip(logits, -30.0, 30.0)))).astype(np.float32)
    return Scores(predictions, (predictions @ heads.weights).astype(np.float32))


def score_torch(features: Matrix, heads: TaskHeads, *, device: str = "cpu") -> Scores:
    import torch

    x = torch.from_numpy(np.ascontiguousarray(features)).to(device)
    coefficients = torch.from_numpy(heads.coefficients).to(device)
    bias = torch.from_numpy(heads.bias).to(device)
    weights = torch.from_numpy(heads.weights).to(device)
    with torch.inference_mode():
        predictions = torch.sigmoid(torch.clamp(x @ coefficients + bias, -30.0, 30.0))
        values = predictions @ weights
    result: Any = (predictions.cpu().numpy(), values.cpu().numpy())
    return Scores(result[0].astype(np.float32), result[1].astype(np.float32))


def contributions(predictions: Matrix, heads: TaskHeads) -> Matrix:
    """Each task's share of each row's value (rows x tasks): weight x prediction."""
    return (predictions * heads.weights).astype(np.float32)
