"""The ranking use cases: the candidate index, signals, follows, the feed and its explanations.

Each use case writes its record through the store (one committed unit of work) and then
updates the catalogue, the in-memory state the feed reads, so what a viewer did shows on their
next page (the online half of learning); `train` is the batch half. The ports this module
declares are implemented beside the servicer: the store (`store.py`), the Ray scorer
(`workers.py`), consent (`clients.py`) and sealing (`libs.privacy`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import numpy as np

from libs.clock import Clock
from libs.errors import InvalidArgument, NotFound
from libs.privacy.subject_data import Erasure
from services.ranking.catalogue import Catalogue, Rows
from services.ranking.embeddings import ItemModel, interaction_matrix, train_item_model
from services.ranking.engagement import BotGuard, signal_weight, watch_fraction
from services.ranking.model import (
    VIDEO_NOT_REGISTERED,
    VIDEO_REMOVED,
    Candidate,
    DroppedSignal,
    ExposureStage,
    FeedMode,
    FeedModeReason,
    FeedPage,
    FeedSettings,
    Follow,
    FollowStats,
    LiveEngagement,
    RemovalReason,
    ShownItem,
    SignalIn,
    SignalKind,
    SignalOutcome,
    Source,
    StoredSignal,
    VideoRegistration,
    Viewer,
    require_not_self_follow,
)
from services.ranking.policy import (
    ExposurePolicy,
    PagePolicy,
    Ranked,
    audience_mask,
    diversify,
    diversity_adjustment,
    exposure_adjustment,
    freshness_adjustment,
)
from services.ranking.scoring import Feature, Scores, Task, TaskHeads, contributions

REPORT_DETAILS_FIELD = "ranking.report_details"

# Features that describe the viewer: zeroed for ads shown to minors or without ad consent.
PERSONAL_FEATURES = (Feature.AFFINITY, Feature.TOPIC_AFFINITY, Feature.CREATOR_AFFINITY)


# -- ports -----------------------------------------------------------------------------------


class RankingStore(Protocol):
    """What the use cases need from storage; store.py satisfies it."""

    async def put_candidate(self, candidate: Candidate) -> None: ...

    async def known_event_ids(self, event_ids: Sequence[str]) -> set[str]: ...

    async def record_signals(self, signals: Sequence[StoredSignal], counted: Sequence[Candidate],
                             flagged: Sequence[str], live_updates: Sequence[LiveEngagement]) -> None:
        """In one unit: the new signals, the counts they changed, newly flagged accounts, LIVE stats."""
        ...

    async def put_follow(self, follow: Follow) -> Follow: ...

    async def delete_follow(self, follower: str, creator: str) -> bool: ...

    async def followers(self, creator: str, *, before: tuple[int, str] | None, limit: int) -> list[Follow]: ...

    async def following(self, user: str, *, before: tuple[int, str] | None, limit: int) -> list[Follow]: ...

    async def put_feed_settings(self, settings: FeedSettings) -> None: ...

    async def record_page(self, items: Sequence[ShownItem], shown: Sequence[Candidate]) -> None: ...

    async def shown_item(self, viewer: str, item_id: str) -> ShownItem | None: ...

    async def live_engagement(self, creator: str, live: str) -> LiveEngagement | None: ...

    async def subject_records(self, user: str) -> dict[str, list[dict[str, object]]]: ...

    async def erase_subject(self, user: str) -> dict[str, int]: ...


class Scorer(Protocol):
    async def score(self, features: np.ndarray) -> Scores: ...


class ConsentChecker(Protocol):
    async def personalised_content(self, user: str) -> bool: ...

    async def personalised_ads(self, user: str) -> bool: ...


class Sealer(Protocol):
    async def seal(self, subject: str, field_name: str, plaintext: str) -> bytes: ...

    async def open(self, subject: str, field_name: str, sealed: bytes | None) -> str | None: ...


# -- settings of the use cases ----------------------------------------------------------------


@dataclass(frozen=True)
class FeedPolicy:
    default_page_size: int = 10
    neighbours: int = 120
    fresh: int = 40
    trending: int = 40
    per_followed_creator: int = 5
    popular: int = 150
    rerank_pool: int = 30  # the best this many (after policy multipliers) enter the diversity pass
    exposure: ExposurePolicy = field(default_factory=ExposurePolicy)
    page: PagePolicy = field(default_factory=PagePolicy)
    signal_clock_skew: dt.timedelta = dt.timedelta(minutes=5)


@dataclass(frozen=True)
class FeedRequest:
    viewer: Viewer
    mode: FeedMode | None
    page_size: int
    session: str | None
    page: int


# -- the use cases -----------------------------------------------------------------------------


class Ranking:
    """Every ranking use case over one store, one catalogue and the ports."""

    def __init__(self, *, store: RankingStore, catalogue: Catalogue, scorer: Scorer, consent: ConsentChecker,
                 sealer: Sealer, bots: BotGuard, heads: TaskHeads, policy: FeedPolicy, clock: Clock,
                 new_id: Callable[[], str], settings: dict[str, FeedSettings] | None = None,
                 live: dict[str, LiveEngagement] | None = None) -> None:
        self.store = store
        self.catalogue = catalogue
        self._scorer = scorer
        self._consent = consent
        self._sealer = sealer
        self._bots = bots
        self.heads = heads
        self.policy = policy
        self._clock = clock
        self._new_id = new_id
        self._settings = dict(settings or {})
        self._live = dict(live or {})
        self._signal_lock = asyncio.Lock()

    # -- candidates ---------------------------------------------------------------------------

    async def register_video(self, registration: VideoRegistration) -> Candidate:
        existing = self.catalogue.get(registration.key)
        if existing is not None:
            candidate = replace(existing, registration=registration, removed=None)
        else:
            candidate = Candidate(registration, self._clock())
        await self.store.put_candidate(candidate)
        self.catalogue.put(candidate)
        return candidate

    async def unregister_video(self, key: str, reason: RemovalReason) -> bool:
        existing = self.catalogue.get(key)
        if existing is None or existing.removed is not None:
            return False
        removed = replace(existing, removed=reason)
        await self.store.put_candidate(removed)
        self.catalogue.remove(key, removed)
        return True

    def get_candidate(self, key: str, name: str) -> Candidate:
        candidate = self.catalogue.get(key)
        if candidate is None or candidate.removed is not None:
            raise NotFound(f"{name} is not in the candidate index", resource_name=name, reason="CANDIDATE_NOT_FOUND")
        return candidate

    # -- signals ------------------------------------------------------------------------------

    async def record_signals(self, viewer: str, signals: Sequence[SignalIn]) -> SignalOutcome:
        """Idempotent per event id: the check, the in-memory update and the commit run under one lock,
        so a batch retried while the first attempt is still in flight also counts once."""
        now = self._clock()
        for signal in signals:
            if signal.occur_time > now + self.policy.signal_clock_skew:
                raise InvalidArgument.for_field(f"signals[{signal.index}].occur_time", "lies in the future",
                                                reason="SIGNAL_IN_FUTURE")
        async with self._signal_lock:
            known = await self.store.known_event_ids([s.event_id for s in signals])
            dropped: list[DroppedSignal] = []
            stored: list[StoredSignal] = []
            duplicates = 0
            in_batch: set[str] = set()
            for signal in signals:
                if signal.event_id in known or signal.event_id in in_batch:
                    duplicates += 1
                    continue
                candidate = None if signal.kind.targets_live else self.catalogue.get(signal.target_key)
                if not signal.kind.targets_live and (candidate is None or candidate.removed is not None):
                    dropped.append(DroppedSignal(signal.index, signal.event_id,
                                                 VIDEO_NOT_REGISTERED if candidate is None else VIDEO_REMOVED))
                    continue
                in_batch.add(signal.event_id)
                duration = candidate.registration.duration if candidate is not None else None
                longest = duration if signal.kind in (SignalKind.WATCH, SignalKind.REPLAY) else None
                reason = self._bots.judge(viewer, signal.kind, now=min(signal.occur_time, now),
                                          watch=signal.watch_time, longest_possible=longest)
                sealed = None
                if signal.report_details:
                    sealed = await self._sealer.seal(f"users/{viewer}", REPORT_DETAILS_FIELD, signal.report_details)
                fraction = watch_fraction(signal.watch_time, duration) if duration is not None else 0.0
                watch_seconds = signal.watch_time.total_seconds() if signal.watch_time is not None else 0.0
                stored.append(StoredSignal(signal.event_id, viewer, signal.kind, signal.target_key,
                                           signal.occur_time, watch_seconds, signal.report_reason, sealed, reason,
                                           now))
                if reason:
                    continue
                if signal.kind.targets_live:
                    self._live[signal.target_key] = self._live_after(signal, now)
                else:
                    self.catalogue.apply_signal(viewer, signal.target_key, signal.kind, fraction, watch_seconds)
            newly_flagged = sorted(self._bots.flagged - self.catalogue.flagged)
            self.catalogue.flagged |= set(newly_flagged)
            touched = {s.target for s in stored if not s.kind.targets_live and not s.discount_reason}
            lives = {s.target for s in stored if s.kind.targets_live and not s.discount_reason}
            await self.store.record_signals(
                stored, [c for c in (self.catalogue.get(key) for key in sorted(touched)) if c is not None],
                newly_flagged, [self._live[key] for key in sorted(lives)])
        discounted = sum(1 for s in stored if s.discount_reason)
        return SignalOutcome(recorded=len(stored) - discounted, duplicates=duplicates, discounted=discounted,
                             dropped=tuple(dropped))

    def _live_after(self, signal: SignalIn, now: dt.datetime) -> LiveEngagement:
        base = self._live.get(signal.target_key) or LiveEngagement(
            signal.target_creator, signal.target_id, 0, 0.0, 0, 0, 0.0, None)
        watch = signal.watch_time.total_seconds() if signal.watch_time is not None else 0.0
        joins = base.joins + (signal.kind is SignalKind.LIVE_JOIN)
        chats = base.chats + (signal.kind is SignalKind.LIVE_CHAT)
        gifts = base.gifts + (signal.kind is SignalKind.LIVE_GIFT)
        # Engagement per minute, decayed with a 5-minute half-life: what promotion reads.
        elapsed = (now - base.update_time).total_seconds() if base.update_time else 0.0
        decay = 0.5 ** (elapsed / 300.0)
        units = {SignalKind.LIVE_JOIN: 1.0, SignalKind.LIVE_VIEW: watch / 60.0, SignalKind.LIVE_CHAT: 2.0,
                 SignalKind.LIVE_GIFT: 5.0}.get(signal.kind, 0.0)
        return LiveEngagement(base.creator, base.live, joins, base.view_seconds + watch, chats, gifts,
                              base.velocity * decay + units, now)

    async def live_engagement(self, creator: str, live: str, name: str) -> LiveEngagement:
        known = self._live.get(f"{creator}/{live}") or await self.store.live_engagement(creator, live)
        if known is None:
            raise NotFound(f"no engagement recorded for {name}", resource_name=name, reason="LIVE_NOT_FOUND")
        if known.update_time is not None:
            decay = 0.5 ** ((self._clock() - known.update_time).total_seconds() / 300.0)
            known = replace(known, velocity=known.velocity * decay)
        return known

    # -- follows --------------------------------------------------------------------------------

    async def follow(self, follower: str, creator: str) -> Follow:
        require_not_self_follow(follower, creator)
        existing = self.catalogue.following.get(follower, {}).get(creator)
        if existing is not None:
            return Follow(follower, creator, existing)
        follow = await self.store.put_follow(Follow(follower, creator, self._clock()))
        self.catalogue.follow(follow)
        return follow

    async def unfollow(self, follower: str, creator: str) -> bool:
        removed = await self.store.delete_follow(follower, creator)
        self.catalogue.unfollow(follower, creator)
        return removed

    async def followers(self, creator: str, *, before: tuple[int, str] | None, limit: int) -> list[Follow]:
        return await self.store.followers(creator, before=before, limit=limit)

    async def following(self, user: str, *, before: tuple[int, str] | None, limit: int) -> list[Follow]:
        return await self.store.following(user, before=before, limit=limit)

    def follow_stats(self, creator: str) -> FollowStats:
        return FollowStats(creator, self.catalogue.follower_count(creator),
                           len(self.catalogue.following.get(creator, {})), self._clock())

    # -- settings -------------------------------------------------------------------------------

    def feed_settings(self, user: str) -> FeedSettings:
        return self._settings.get(user) or FeedSettings(user, None, None)

    async def update_feed_settings(self, user: str, mode: FeedMode | None) -> FeedSettings:
        settings = FeedSettings(user, mode, self._clock())
        await self.store.put_feed_settings(settings)
        self._settings[user] = settings
        return settings

    # -- the feed -------------------------------------------------------------------------------

    async def resolve_mode(self, request: FeedRequest) -> tuple[FeedMode, FeedModeReason]:
        """Decided on every call, never carried in the session: a consent withdrawn or a setting
        changed between two pages applies to the next one."""
        user = request.viewer.user
        saved = self.feed_settings(user).default_mode
        wanted = request.mode or saved or FeedMode.PERSONALISED
        reason = FeedModeReason.REQUESTED if request.mode else FeedModeReason.VIEWER_SETTING
        if wanted is FeedMode.NON_PERSONALISED:
            return wanted, reason
        if not await self._consent.personalised_content(user):
            return FeedMode.NON_PERSONALISED, FeedModeReason.NO_CONSENT
        memory = self.catalogue.viewer(user)
        if (memory is None or not memory.state.known) and not self.catalogue.following.get(user):
            return FeedMode.NON_PERSONALISED, FeedModeReason.COLD_START
        return FeedMode.PERSONALISED, reason

    async def get_feed(self, request: FeedRequest) -> FeedPage:
        now = self._clock()
        now_s = now.timestamp()
        viewer = request.viewer
        mode, reason = await self.resolve_mode(request)
        personal = mode is FeedMode.PERSONALISED
        sources = self._sources(viewer, now_s, personal)
        size = request.page_size or self.policy.default_page_size
        rows = self._eligible(viewer, sources, size)
        if not rows.size:
            return FeedPage((), mode, reason, request.session or self._new_id(), request.page, False)
        features = self.catalogue.feature_rows(viewer.user, rows, region=viewer.region, now_s=now_s,
                                               personal=personal)
        commercial = self.catalogue.commercial[rows]
        if personal and commercial.any() and not (viewer.adult and await self._consent.personalised_ads(viewer.user)):
            for column in PERSONAL_FEATURES:  # no personalised ads for minors or without ad consent
                features[commercial, column] = 0.0
        scores = await self._scorer.score(features)
        page = self._page(viewer, rows, sources, features, scores, size, mode, now, personal)
        session = request.session or self._new_id()
        items = tuple(replace(item, position=request.page * size + i) for i, item in enumerate(page))
        shown = [self.catalogue.candidates[self.catalogue.rows[f"{i.creator}/{i.video}"]] for i in items]
        shown_rows = [self.catalogue.rows[f"{i.creator}/{i.video}"] for i in items]
        self.catalogue.mark_seen(viewer.user, shown_rows)
        self.catalogue.count_impressions(shown_rows)
        await self.store.record_page(items, shown)
        return FeedPage(items, mode, reason, session, request.page, more=len(rows) > len(items))

    def _sources(self, viewer: Viewer, now_s: float, personal: bool) -> list[tuple[Source, Rows]]:
        catalogue, policy = self.catalogue, self.policy
        following = catalogue.from_followed(viewer.user, policy.per_followed_creator)
        if personal:
            return [(Source.FOLLOWING, following),
                    (Source.NEAREST_NEIGHBOURS, catalogue.nearest(viewer.user, policy.neighbours)),
                    (Source.TRENDING, catalogue.trending(now_s)[:policy.trending]),
                    (Source.FRESH, catalogue.fresh(now_s, policy.fresh))]
        return [(Source.FOLLOWING, following),
                (Source.REGIONAL_POPULAR, catalogue.popular(viewer.region, now_s)[:policy.popular]),
                (Source.WORLDWIDE_POPULAR, catalogue.popular("", now_s)[:policy.popular]),
                (Source.FRESH, catalogue.fresh(now_s, policy.fresh // 2))]

    def _eligible(self, viewer: Viewer, sources: list[tuple[Source, Rows]], size: int) -> Rows:
        """Merged rows that may be shown to this viewer, in the order first proposed.

        Staged exposure: a video still in its cohort or expanded pool reaches only the viewers in
        that pool (followers always), unless the page could not be filled otherwise."""
        catalogue = self.catalogue
        proposed = [rows for _, rows in sources if rows.size]
        if not proposed:
            return np.zeros(0, np.int64)
        stacked = np.concatenate(proposed)
        unique, first = np.unique(stacked, return_index=True)
        rows = unique[np.argsort(first, kind="stable")]
        keep = catalogue.live[rows] & (catalogue.creator_ids[rows] != catalogue.known_id(viewer.user))
        if not viewer.adult:
            keep &= ~catalogue.unsuitable[rows]
        seen = catalogue.seen(viewer.user)
        if seen:
            keep &= ~np.isin(rows, np.fromiter(seen, np.int64, len(seen)))
        rows = rows[keep]
        following = next((r for source, r in sources if source is Source.FOLLOWING), np.zeros(0, np.int64))
        inside = audience_mask(viewer.user, catalogue.video_hash[rows], catalogue.stage[rows],
                               self.policy.exposure) | np.isin(rows, following)
        chosen, outside = rows[inside], rows[~inside]
        backfill = max(0, 4 * size - len(chosen))
        return np.concatenate([chosen, outside[:backfill]]) if backfill else chosen

    def _page(self, viewer: Viewer, rows: Rows, sources: list[tuple[Source, Rows]], features: np.ndarray,
              scores: Scores, size: int, mode: FeedMode, now: dt.datetime, personal: bool) -> list[ShownItem]:
        catalogue, policy = self.catalogue, self.policy
        fresh = features[:, Feature.FRESHNESS]
        demoted = catalogue.stage[rows] == ExposureStage.DEMOTED
        multipliers = (1.0 + policy.page.fresh_boost * fresh) * np.where(
            demoted, policy.exposure.demoted_multiplier, 1.0)
        adjusted = np.logaddexp(0.0, scores.values) * multipliers  # softplus: positive, order-preserving
        pool_size = min(len(rows), max(policy.rerank_pool, size))
        pool = np.argpartition(-adjusted, pool_size - 1)[:pool_size]
        pool = pool[np.argsort(-adjusted[pool], kind="stable")]
        ranked = []
        for i in pool.tolist():
            registration = catalogue.candidates[int(rows[i])].registration
            ranked.append(Ranked(str(i), registration.creator, _main_topic(registration.hashtags), float(adjusted[i])))
        chosen = diversify(ranked, size, policy.page)
        if not personal:
            chosen = _interleave_following(chosen, sources, rows, catalogue.publish_s)
        shares = contributions(scores.predictions, self.heads)
        items: list[ShownItem] = []
        for entry, value, repeats in chosen:
            i = int(entry.key)
            row = int(rows[i])
            candidate = catalogue.candidates[row]
            registration = candidate.registration
            steps = [freshness_adjustment(float(fresh[i]), policy.page)]
            for step in (exposure_adjustment(candidate.stage, policy.exposure),
                         diversity_adjustment(repeats, policy.page)):
                if step is not None:
                    steps.append(step)
            items.append(ShownItem(
                item_id=self._new_id(), viewer=viewer.user, creator=registration.creator, video=registration.video,
                position=0, mode=mode, sources=tuple(source for source, proposed in sources if (proposed == row).any()),
                predictions={task.name.lower(): float(scores.predictions[i, task]) for task in Task},
                contributions={task.name.lower(): float(shares[i, task]) for task in Task}
                | {f"feature.{f.name.lower()}": float(features[i, f]) for f in Feature},
                adjustments=tuple(steps), score=value, labels=registration.labels,
                commercial=registration.commercial, ad=registration.ad, rank_time=now))
        return items

    async def explain(self, viewer: str, item_id: str, name: str) -> ShownItem:
        item = await self.store.shown_item(viewer, item_id)
        if item is None:
            raise NotFound(f"no feed item {name}", resource_name=name, reason="FEED_ITEM_NOT_FOUND")
        return item

    # -- batch training (Monolith's batch half) --------------------------------------------------

    def training_data(self, signals: Sequence[tuple[str, str, SignalKind, float]], max_items: int
                      ) -> tuple[np.ndarray, list[str]]:
        """Users x items of counted engagement (viewer, video key, kind, watch seconds), over the
        `max_items` most engaged-with videos."""
        history = []
        for user, key, kind, watch_seconds in signals:
            candidate = self.catalogue.get(key)
            if candidate is not None:
                fraction = watch_fraction(dt.timedelta(seconds=watch_seconds), candidate.registration.duration)
                history.append((user, key, signal_weight(kind, fraction)))
        totals: dict[str, float] = {}
        for _, key, weight in history:
            if weight > 0:
                totals[key] = totals.get(key, 0.0) + weight
        items = sorted(totals, key=lambda key: -totals[key])[:max_items]
        item_index = {key: i for i, key in enumerate(items)}
        users: dict[str, int] = {}
        rows, cols, weights = [], [], []
        for user, key, weight in history:
            column = item_index.get(key)
            if column is None or weight <= 0:
                continue
            rows.append(users.setdefault(user, len(users)))
            cols.append(column)
            weights.append(weight)
        return interaction_matrix(rows, cols, weights, (len(users), len(items))), items

    def install(self, model: ItemModel) -> None:
        self.catalogue.install_model(model)

    @staticmethod
    def train(matrix: np.ndarray, items: list[str], *, dim: int, l2: float) -> ItemModel:
        return train_item_model(matrix, items, dim=dim, l2=l2)

    # -- the data subject -----------------------------------------------------------------------

    async def export(self, user_id: str) -> Mapping[str, Any]:
        """Ranking's part of an access request (`libs.privacy.subject_data.SubjectDataHolder`):
        signals (report details opened), follows, feed settings, items shown."""
        user = user_id
        records = await self.store.subject_records(user)
        for record in records.get("signals", []):
            sealed = record.pop("report_details_sealed", None)
            if isinstance(sealed, bytes):
                record["report_details"] = await self._sealer.open(f"users/{user}", REPORT_DETAILS_FIELD, sealed) or ""
        return {section: rows for section, rows in records.items() if rows}  # the contract leaves out empty sections

    async def erase(self, user_id: str) -> Erasure:
        """Ranking's erasure step: every row about the viewer goes, and their in-memory profile;
        as a creator, their videos leave every feed (ingest deletes the media). Idempotent: a second
        run deletes nothing. Aggregate counts on other creators' videos stay (no person)."""
        own_videos = [self.catalogue.candidates[row].key for row in self.catalogue.by_creator.get(user_id, [])]
        withdrawn = [key for key in own_videos if await self.unregister_video(key, RemovalReason.ERASURE)]
        erased = await self.store.erase_subject(user_id)
        self.catalogue.forget_viewer(user_id)
        self._settings.pop(user_id, None)
        self._bots.forget(user_id)
        self.catalogue.flagged.discard(user_id)
        return Erasure(summary="deleted " + ", ".join(f"{count} {table.replace('_', ' ')}"
                                                      for table, count in erased.items())
                       + f"; withdrew {len(withdrawn)} of their videos from every feed")


def _main_topic(hashtags: Sequence[str]) -> str:
    return hashtags[0].lower() if hashtags else ""


def _interleave_following(chosen: list[tuple[Ranked, float, int]], sources: list[tuple[Source, Rows]],
                          rows: Rows, publish_s: np.ndarray) -> list[tuple[Ranked, float, int]]:
    """Non-personalised pages: followed creators' videos newest first in every other slot,
    popularity in the rest."""
    followed = next((r for source, r in sources if source is Source.FOLLOWING), np.zeros(0, np.int64))
    following = [entry for entry in chosen if bool(np.isin(rows[int(entry[0].key)], followed))]
    others = [entry for entry in chosen if entry not in following]
    following.sort(key=lambda entry: -float(publish_s[int(rows[int(entry[0].key)])]))
    merged: list[tuple[Ranked, float, int]] = []
    while following or others:
        if following:
            merged.append(following.pop(0))
        if others:
            merged.append(others.pop(0))
    return merged
