"""The ranker's working memory: every candidate, viewer and follow, as arrays the feed reads fast.

The store is the record (SQLite); this is the state built from it at start and kept current by
every use case after its commit, so a signal changes the next page within milliseconds. It
holds no I/O: the nearest-neighbour index is a port (`NeighbourIndex`), filled here.

Rows: each candidate has a row in the item arrays (its ANN vector, collaborative key, content
vector and the per-video features the scorer reads). A removed candidate keeps its row, marked
out, so rows never move under a page being built.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import numpy.typing as npt

from services.ranking.embeddings import ItemModel, ViewerState, content_vector
from services.ranking.engagement import count_signal, signal_weight, watch_fraction
from services.ranking.model import Candidate, Follow, SignalKind
from services.ranking.policy import ExposurePolicy, next_stage, stable_hash, velocity
from services.ranking.scoring import FEATURES, ITEM_PRIOR_FEATURES, Feature

Rows = npt.NDArray[np.int64]
Matrix = npt.NDArray[np.float32]


class NeighbourIndex(Protocol):
    """Approximate nearest neighbours by inner product over item rows (`ann.py`)."""

    def upsert(self, rows: Rows, vectors: Matrix) -> None: ...

    def remove(self, row: int) -> None: ...

    def search(self, vector: Matrix, count: int) -> Rows: ...


@dataclass(frozen=True)
class CatalogueSettings:
    dim: int = 64
    history_per_viewer: int = 200  # engagements kept per viewer to rebuild embeddings after training
    seen_per_viewer: int = 5_000  # videos remembered as seen (never shown again)
    trending_size: int = 500
    fresh_window: dt.timedelta = dt.timedelta(hours=48)
    refresh_seconds: float = 1.0  # trending and regional lists are recomputed at most this often
    fresh_half_life_s: float = 12 * 3600.0
    # Each new engagement multiplies the viewer's older ones by this (recent taste weighs more).
    engagement_decay: float = 0.99  # tuned on the MovieLens validation split (`limelight rank eval`)
    # Weight of the video's own statistics on personalised pages, where the viewer's affinity
    # already carries what similar viewers liked: tuned to 0 on MovieLens (`limelight rank eval`).
    # Non-personalised pages rank by those statistics at full weight.
    item_prior: float = 0.0


@dataclass
class ViewerMemory:
    state: ViewerState
    history: deque[tuple[int, float]]
    seen: OrderedDict[int, None] = field(default_factory=OrderedDict)


class Catalogue:
    def __init__(self, settings: CatalogueSettings, index: NeighbourIndex, exposure: ExposurePolicy) -> None:
        self.settings = settings
        self._index = index
        self._exposure = exposure
        dim = settings.dim
        self.candidates: list[Candidate] = []
        self.rows: dict[str, int] = {}
        self._capacity = 1024
        self.content = np.zeros((self._capacity, dim), np.float32)
        self.keys = np.zeros((self._capacity, dim), np.float32)
        self.queries = np.zeros((self._capacity, dim), np.float32)
        self.features = np.zeros((self._capacity, FEATURES), np.float32)
        self.publish_s = np.zeros(self._capacity, np.float64)
        self.velocity = np.zeros(self._capacity, np.float32)
        self.popularity = np.zeros(self._capacity, np.float32)
        self.live = np.zeros(self._capacity, bool)
        self.creator_ids = np.zeros(self._capacity, np.int64)
        self.region_ids = np.zeros(self._capacity, np.int64)
        self.stage = np.zeros(self._capacity, np.int8)
        self.unsuitable = np.zeros(self._capacity, bool)
        self.commercial = np.zeros(self._capacity, bool)
        self.video_hash = np.zeros(self._capacity, np.uint64)
        self._names: dict[str, int] = {}
        self.model = ItemModel.empty(dim)
        self.viewers: dict[str, ViewerMemory] = {}
        self.following: dict[str, dict[str, dt.datetime]] = {}
        self.followers: dict[str, dict[str, dt.datetime]] = {}
        self.by_creator: dict[str, list[int]] = {}
        self.flagged: set[str] = set()
        self._trending: Rows = np.zeros(0, np.int64)
        self._regional: dict[int, Rows] = {}
        self._refreshed_at = -math.inf

    # -- identifiers ----------------------------------------------------------------------

    def known_id(self, name: str) -> int:
        """The id of a name seen before, else -1 (matches nothing)."""
        return self._names.get(name, -1)

    def name_id(self, name: str) -> int:
        """A small integer per creator or region name (0 is 'none')."""
        if not name:
            return 0
        return self._names.setdefault(name, len(self._names) + 1)

    # -- candidates -----------------------------------------------------------------------

    def _grow(self) -> None:
        self._capacity *= 2
        for attribute in ("content", "keys", "queries", "features", "publish_s", "velocity", "popularity",
                          "live", "creator_ids", "region_ids", "stage", "unsuitable", "commercial", "video_hash"):
            old = getattr(self, attribute)
            new = np.zeros((self._capacity, *old.shape[1:]), old.dtype)
            new[:len(old)] = old
            setattr(self, attribute, new)

    def put(self, candidate: Candidate, *, index: bool = True) -> int:
        """Add or replace a candidate; returns its row. `index=False` leaves the ANN index to the
        next `rebuild_index` (a bulk load at start)."""
        registration = candidate.registration
        row = self.rows.get(candidate.key)
        if row is None:
            row = len(self.candidates)
            if row >= self._capacity:
                self._grow()
            self.candidates.append(candidate)
            self.rows[candidate.key] = row
            self.by_creator.setdefault(registration.creator, []).append(row)
        else:
            self.candidates[row] = candidate
        self.content[row] = content_vector(registration.hashtags, registration.creator, self.settings.dim)
        self.publish_s[row] = registration.publish_time.timestamp()
        self.creator_ids[row] = self.name_id(registration.creator)
        self.region_ids[row] = self.name_id(registration.region)
        self.unsuitable[row] = registration.unsuitable_for_minors
        self.commercial[row] = registration.commercial
        self.video_hash[row] = stable_hash(candidate.key)
        self.live[row] = candidate.removed is None
        trained = self.model.index.get(candidate.key)
        if trained is not None:
            self.keys[row] = self.model.keys[trained]
            self.queries[row] = self.model.queries[trained]
        self._restat(row)
        if not index:
            return row
        if candidate.removed is None:
            self._index.upsert(np.array([row]), self._ann_vectors(np.array([row])))
        else:
            self._index.remove(row)
        return row

    def get(self, key: str) -> Candidate | None:
        row = self.rows.get(key)
        return None if row is None else self.candidates[row]

    def remove(self, key: str, candidate: Candidate) -> None:
        row = self.rows.get(key)
        if row is None:
            return
        self.candidates[row] = candidate
        self.live[row] = False
        self._index.remove(row)

    def _ann_vectors(self, rows: Rows) -> Matrix:
        scale = self.model.affinity_scale
        return np.hstack([self.queries[rows], self.content[rows] * scale]).astype(np.float32)

    def _restat(self, row: int) -> None:
        candidate = self.candidates[row]
        counts = candidate.counts
        impressions = counts.impressions + 10.0
        views = counts.views + 5.0
        f = self.features[row]
        f[Feature.COMPLETION_RATE] = (counts.completions + 1.5) / views
        f[Feature.LIKE_RATE] = (counts.likes + 0.5) / impressions
        f[Feature.COMMENT_RATE] = (counts.comments + 0.1) / impressions
        f[Feature.SHARE_RATE] = (counts.shares + counts.saves + 0.1) / impressions
        f[Feature.NEGATIVE_RATE] = (counts.negative() + 0.2) / impressions
        self.popularity[row] = math.log1p(max(counts.engagement(), 0.0))
        f[Feature.POPULARITY] = self.popularity[row]
        candidate.velocity = velocity(counts)
        self.velocity[row] = candidate.velocity
        candidate.stage = next_stage(candidate.stage, counts, self._exposure)
        self.stage[row] = int(candidate.stage)

    # -- the trained model ---------------------------------------------------------------

    def install_model(self, model: ItemModel) -> None:
        """Swap in freshly trained factors and rebuild viewer embeddings from their histories; the
        ANN index follows with `rebuild_index` (built off the event loop, then swapped in)."""
        self.model = model
        self.keys[:] = 0.0
        self.queries[:] = 0.0
        for key, trained in model.index.items():
            row = self.rows.get(key)
            if row is not None:
                self.keys[row] = model.keys[trained]
                self.queries[row] = model.queries[trained]
        for memory in self.viewers.values():
            memory.state.collaborative[:] = 0.0
            for row, weight in memory.history:
                memory.state.collaborative *= self.settings.engagement_decay
                memory.state.collaborative += weight * self.keys[row]

    def index_snapshot(self) -> tuple[int, Rows, Matrix]:
        """(row count, live rows, their ANN vectors): what a new index is built from."""
        count = len(self.candidates)
        rows = np.flatnonzero(self.live[:count]).astype(np.int64)
        return count, rows, self._ann_vectors(rows)

    def swap_index(self, index: NeighbourIndex, snapshot_count: int, indexed: Rows) -> None:
        """Use `index` (built from a snapshot) and bring it up to date with what changed since."""
        self._index = index
        count = len(self.candidates)
        added = np.arange(snapshot_count, count, dtype=np.int64)
        added = added[self.live[snapshot_count:count]]
        if added.size:
            index.upsert(added, self._ann_vectors(added))
        for row in indexed[~self.live[indexed]].tolist():
            index.remove(int(row))

    # -- viewers and signals --------------------------------------------------------------

    def viewer(self, user: str) -> ViewerMemory | None:
        return self.viewers.get(user)

    def _memory(self, user: str) -> ViewerMemory:
        memory = self.viewers.get(user)
        if memory is None:
            memory = ViewerMemory(ViewerState.new(self.settings.dim), deque(maxlen=self.settings.history_per_viewer))
            self.viewers[user] = memory
        return memory

    def apply_signal(self, user: str, key: str, kind: SignalKind, fraction: float, watch_seconds: float) -> None:
        """A counted signal: the video's counts and features, the viewer's embedding, at once."""
        row = self.rows.get(key)
        if row is None:
            return
        candidate = self.candidates[row]
        count_signal(candidate.counts, kind, fraction, watch_seconds)
        self._restat(row)
        weight = signal_weight(kind, fraction)
        memory = self._memory(user)
        if weight:
            memory.state.absorb(weight, self.keys[row], self.content[row], candidate.registration.creator,
                                decay=self.settings.engagement_decay)
            memory.history.append((row, weight))
        self.mark_seen(user, [row])

    def replay(self, user: str, key: str, kind: SignalKind, watch_seconds: float) -> float:
        """A stored signal at start: the viewer's embedding and seen set only (the video's counts
        were stored with it). Returns the signal's weight (the trainer's input)."""
        row = self.rows.get(key)
        if row is None:
            return 0.0
        candidate = self.candidates[row]
        fraction = watch_fraction(dt.timedelta(seconds=watch_seconds), candidate.registration.duration)
        weight = signal_weight(kind, fraction)
        memory = self._memory(user)
        if weight:
            memory.state.absorb(weight, self.keys[row], self.content[row], candidate.registration.creator,
                                decay=self.settings.engagement_decay)
            memory.history.append((row, weight))
        memory.seen[row] = None
        return weight

    def mark_seen(self, user: str, rows: Iterable[int]) -> None:
        seen = self._memory(user).seen
        for row in rows:
            seen[int(row)] = None
            seen.move_to_end(int(row))
        while len(seen) > self.settings.seen_per_viewer:
            seen.popitem(last=False)

    def count_impressions(self, rows: Sequence[int]) -> None:
        for row in rows:
            self.candidates[row].counts.impressions += 1
            self._restat(row)

    def forget_viewer(self, user: str) -> None:
        self.viewers.pop(user, None)
        for creator in self.following.pop(user, {}):
            self.followers.get(creator, {}).pop(user, None)

    # -- follows --------------------------------------------------------------------------

    def follow(self, follow: Follow) -> None:
        self.following.setdefault(follow.follower, {})[follow.creator] = follow.create_time
        self.followers.setdefault(follow.creator, {})[follow.follower] = follow.create_time

    def unfollow(self, follower: str, creator: str) -> None:
        self.following.get(follower, {}).pop(creator, None)
        self.followers.get(creator, {}).pop(follower, None)

    def follower_count(self, creator: str) -> int:
        return sum(1 for user in self.followers.get(creator, {}) if user not in self.flagged)

    # -- candidate sources ----------------------------------------------------------------

    def _refresh(self, now_s: float) -> None:
        if now_s - self._refreshed_at < self.settings.refresh_seconds:
            return
        self._refreshed_at = now_s
        count = len(self.candidates)
        live = self.live[:count]
        heat = np.where(live, self.velocity[:count] * (1.0 + self.popularity[:count]), -np.inf)
        size = min(self.settings.trending_size, int(live.sum()))
        if size == 0:
            self._trending = np.zeros(0, np.int64)
            self._regional = {}
            return
        top = np.argpartition(-heat, size - 1)[:size]
        self._trending = top[np.argsort(-heat[top])].astype(np.int64)
        popular = np.where(live, self.popularity[:count] + 0.01 * self.velocity[:count], -np.inf)
        regional: dict[int, Rows] = {}
        regions = self.region_ids[:count]
        for region in np.unique(regions[live]):
            rows = np.flatnonzero(live & (regions == region))
            order = rows[np.argsort(-popular[rows], kind="stable")][:self.settings.trending_size]
            regional[int(region)] = order.astype(np.int64)
        worldwide = min(self.settings.trending_size, int(live.sum()))
        top_popular = np.argpartition(-popular, worldwide - 1)[:worldwide]
        regional[0] = top_popular[np.argsort(-popular[top_popular], kind="stable")].astype(np.int64)
        self._regional = regional

    def trending(self, now_s: float) -> Rows:
        self._refresh(now_s)
        return self._trending

    def popular(self, region: str, now_s: float) -> Rows:
        """Most engaged-with videos of a region ('' = worldwide)."""
        self._refresh(now_s)
        region_id = self._names.get(region, -1) if region else 0
        return self._regional.get(region_id, np.zeros(0, np.int64))

    def fresh(self, now_s: float, count: int) -> Rows:
        total = len(self.candidates)
        start = max(0, total - 4 * count)
        rows = np.arange(start, total)
        window = self.settings.fresh_window.total_seconds()
        keep = self.live[rows] & (self.publish_s[rows] >= now_s - window)
        rows = rows[keep]
        return rows[np.argsort(-self.publish_s[rows], kind="stable")][:count].astype(np.int64)

    def from_followed(self, user: str, per_creator: int) -> Rows:
        """Newest videos of the creators `user` follows, newest first."""
        rows: list[int] = []
        for creator in self.following.get(user, {}):
            live = [row for row in self.by_creator.get(creator, ()) if self.live[row]]
            rows.extend(live[-per_creator:])
        if not rows:
            return np.zeros(0, np.int64)
        array = np.array(rows, np.int64)
        return array[np.argsort(-self.publish_s[array], kind="stable")]

    def nearest(self, user: str, count: int) -> Rows:
        memory = self.viewers.get(user)
        if memory is None or not memory.state.known or not len(self.candidates):
            return np.zeros(0, np.int64)
        state = memory.state
        query = np.concatenate([state.collaborative, state.content * self.model.affinity_scale]).astype(np.float32)
        if not np.any(query):
            return np.zeros(0, np.int64)
        return self._index.search(query, count)

    # -- features -------------------------------------------------------------------------

    def feature_rows(self, user: str, rows: Rows, *, region: str, now_s: float, personal: bool) -> Matrix:
        """The scorer's input for `rows` as seen by `user`; without `personal`, nothing of the viewer."""
        features = self.features[rows].copy()
        age = np.maximum(now_s - self.publish_s[rows], 0.0)
        features[:, Feature.FRESHNESS] = np.exp(-age * math.log(2) / self.settings.fresh_half_life_s)
        region_id = self._names.get(region, -1) if region else -1
        features[:, Feature.REGIONAL_POPULARITY] = np.where(self.region_ids[rows] == region_id,
                                                            self.popularity[rows], 0.0)
        memory = self.viewers.get(user) if personal else None
        if personal:
            features[:, list(ITEM_PRIOR_FEATURES)] *= self.settings.item_prior
        if memory is not None:
            state = memory.state
            scale = self.model.affinity_scale
            features[:, Feature.AFFINITY] = self.queries[rows] @ state.collaborative / scale
            norm = float(np.linalg.norm(state.content)) or 1.0
            features[:, Feature.TOPIC_AFFINITY] = self.content[rows] @ (state.content / norm)
            creator_ids = self.creator_ids[rows]
            followed = np.array([self.known_id(c) for c in self.following.get(user, {})], np.int64)
            features[:, Feature.FOLLOWS_CREATOR] = np.isin(creator_ids, followed)
            if state.creators:
                ids = np.array([self.known_id(c) for c in state.creators], np.int64)
                weights = np.tanh(np.array(list(state.creators.values()), np.float32) / 3.0)
                order = np.argsort(ids)
                ids, weights = ids[order], weights[order]
                at = np.clip(np.searchsorted(ids, creator_ids), 0, len(ids) - 1)
                features[:, Feature.CREATOR_AFFINITY] = np.where(ids[at] == creator_ids, weights[at], 0.0)
        return features

    def seen(self, user: str) -> OrderedDict[int, None]:
        memory = self.viewers.get(user)
        return memory.seen if memory is not None else OrderedDict()

