"""Embeddings: what the ranker knows of each video and each viewer, as vectors.

A video's vector has two parts:
- **collaborative**, learned from who engaged with what: EASE^R (Steck 2019), the item-item
  model `B = I - P diag(1/diag P)` with `P = (XᵀX + λI)⁻¹`, factorised to rank `d` by a
  truncated SVD, `B ≈ K Qᵀ`. A viewer's collaborative embedding is the weighted sum of the
  *keys* `K_i` of what they engaged with, and `u · Q_j` is then EASE's score for video `j`;
  the *queries* `Q_j` go into the ANN index. Trained in batch on the engagement log
  (`train_item_model`), like Monolith's batch half.
- **content**, from the video's hashtags and creator: a fixed random vector per hashtag and
  per creator (seeded by the name), so a video nobody has engaged with yet (a fresh upload)
  still has a place, and the viewer's content profile is the same sum over what they engaged
  with (topic and creator affinity).

Online, each counted signal adds its weight times the video's key to the viewer's embedding
(`ViewerState.absorb`) at once: the next page reflects it (Monolith's online half).

The offline evaluation (`limelight rank eval`) trains and scores with these same functions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

Vector = npt.NDArray[np.float32]
Matrix = npt.NDArray[np.float32]


def named_vector(name: str, dim: int) -> Vector:
    """A fixed pseudo-random unit vector for a name (a hashtag, a creator)."""
    seed = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
    vector = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def content_vector(hashtags: Sequence[str], creator: str, dim: int) -> Vector:
    """Hashtags and the creator, each a unit vector, summed and normalised."""
    total = named_vector(f"creator:{creator}", dim) * 0.7
    for tag in hashtags:
        total = total + named_vector(f"tag:{tag.lower()}", dim) / max(1.0, np.sqrt(len(hashtags)))
    norm = float(np.linalg.norm(total))
    return (total / norm if norm else total).astype(np.float32)


@dataclass(frozen=True)
class ItemModel:
    """Trained collaborative factors for the videos in `index` (the others have none yet)."""

    index: dict[str, int]
    keys: Matrix  # items x d
    queries: Matrix  # items x d
    affinity_scale: float  # a typical strong score, to standardise affinities

    @property
    def dim(self) -> int:
        return int(self.keys.shape[1])

    @classmethod
    def empty(cls, dim: int) -> ItemModel:
        return cls({}, np.zeros((0, dim), np.float32), np.zeros((0, dim), np.float32), 1.0)


def interaction_matrix(rows: Sequence[int], cols: Sequence[int], weights: Sequence[float],
                       shape: tuple[int, int]) -> Matrix:
    """Dense users x items, weights summed then capped at 1 per pair (an engagement, not a count)."""
    matrix = np.zeros(shape, dtype=np.float32)
    np.add.at(matrix, (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)),
              np.asarray(weights, dtype=np.float32))
    return np.clip(matrix, -1.0, 1.0).astype(np.float32)


def train_item_model(matrix: Matrix, item_names: Sequence[str], *, dim: int, l2: float) -> ItemModel:
    """EASE^R on `matrix` (users x items), factorised to rank `dim`."""
    items = matrix.shape[1]
    if items == 0:
        return ItemModel.empty(dim)
    gram = (matrix.T @ matrix).astype(np.float64)
    gram[np.diag_indices(items)] += l2
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)
    weights[np.diag_indices(items)] = 0.0
    rank = min(dim, items)
    left, singular, right_t = _top_singular(weights, rank)
    root = np.sqrt(singular[:rank])
    keys = np.zeros((items, dim), dtype=np.float32)
    queries = np.zeros((items, dim), dtype=np.float32)
    keys[:, :rank] = left[:, :rank] * root
    queries[:, :rank] = right_t[:rank].T * root
    scores = matrix @ keys @ queries.T
    positive = scores[matrix > 0]
    scale = float(np.percentile(positive, 90)) if positive.size else 1.0
    return ItemModel({name: i for i, name in enumerate(item_names)}, keys, queries, max(scale, 1e-6))


def _top_singular(matrix: npt.NDArray[np.float64], rank: int) -> tuple[npt.NDArray[np.float64], ...]:
    """The top `rank` singular triplets: exact for a large share of the spectrum, else randomised
    (Halko et al. 2011, four power iterations), which is what keeps 4,000 items to seconds."""
    if 4 * rank >= matrix.shape[0]:
        left, singular, right_t = np.linalg.svd(matrix)
        return left[:, :rank], singular[:rank], right_t[:rank]
    probe = np.random.default_rng(0).standard_normal((matrix.shape[1], rank + 16))
    basis = np.linalg.qr(matrix @ probe)[0]
    for _ in range(4):
        basis = np.linalg.qr(matrix @ (matrix.T @ basis))[0]
    small_left, singular, right_t = np.linalg.svd(basis.T @ matrix, full_matrices=False)
    return (basis @ small_left)[:, :rank], singular[:rank], right_t[:rank]


@dataclass
class ViewerState:
    """One viewer's embeddings and short-term profile, updated by every counted signal."""

    collaborative: Vector
    content: Vector
    creators: dict[str, float] = field(default_factory=dict)
    engaged: int = 0

    @classmethod
    def new(cls, dim: int) -> ViewerState:
        return cls(np.zeros(dim, np.float32), np.zeros(dim, np.float32))

    def absorb(self, weight: float, key: Vector | None, content: Vector, creator: str, *,
               decay: float = 0.98) -> None:
        """Fold one engagement in: older engagement fades by `decay` per new one."""
        self.collaborative *= decay
        self.content *= decay
        if key is not None:
            self.collaborative += weight * key
        self.content += weight * content
        self.creators[creator] = self.creators.get(creator, 0.0) * decay + weight
        self.engaged += 1

    @property
    def known(self) -> bool:
        return self.engaged > 0
