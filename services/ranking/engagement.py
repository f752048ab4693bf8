"""What a signal is worth, and when it is bot-like (discounted, never counted).

Pure rules over plain values:
- `signal_weight`: how much one signal moves the viewer's embedding (negative for skips,
  "not interested" and reports);
- `count_signal`: how it changes a video's counts;
- `BotGuard`: the three discount rules of issue 12. A watch longer than the video allows
  (duration x `max_watch_ratio` plus slack; LIVE views longer than the LIVE ran) is
  impossible; more than `burst_limit` engagements from one account within `burst_window`
  is a burst; an account whose discounted share passes `flag_ratio` (after `flag_min`
  signals) is flagged, and everything it sends is discounted from then on.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from dataclasses import dataclass, field

from services.ranking.model import (
    ACCOUNT_FLAGGED,
    BURST,
    IMPOSSIBLE_WATCH_TIME,
    EngagementCounts,
    SignalKind,
)

# Signals that count toward a burst (a person cannot like, comment and share at machine speed).
ACTIVE_KINDS = frozenset({SignalKind.LIKE, SignalKind.COMMENT, SignalKind.SHARE, SignalKind.SAVE,
                          SignalKind.REPORT, SignalKind.NOT_INTERESTED, SignalKind.LIVE_CHAT, SignalKind.LIVE_GIFT})


def watch_fraction(watch: dt.timedelta | None, duration: dt.timedelta) -> float:
    if watch is None or duration.total_seconds() <= 0:
        return 0.0
    return min(1.0, watch.total_seconds() / duration.total_seconds())


def signal_weight(kind: SignalKind, fraction: float) -> float:
    """The signal's pull on the viewer's embedding: deep engagement above likes, reports most negative."""
    if kind is SignalKind.WATCH:
        return fraction - 0.3  # under a third of the video is mild disinterest
    return {
        SignalKind.REPLAY: 1.0, SignalKind.LIKE: 1.0, SignalKind.COMMENT: 2.0, SignalKind.SHARE: 2.0,
        SignalKind.SAVE: 2.0, SignalKind.SKIP: -0.5, SignalKind.NOT_INTERESTED: -2.0, SignalKind.REPORT: -4.0,
    }.get(kind, 0.0)


def count_signal(counts: EngagementCounts, kind: SignalKind, fraction: float, watch_seconds: float) -> None:
    if kind is SignalKind.WATCH:
        counts.views += 1
        counts.watch_seconds += watch_seconds
        if fraction >= 0.95:
            counts.completions += 1
        return
    attribute = {
        SignalKind.REPLAY: "replays", SignalKind.LIKE: "likes", SignalKind.COMMENT: "comments",
        SignalKind.SHARE: "shares", SignalKind.SAVE: "saves", SignalKind.SKIP: "skips",
        SignalKind.NOT_INTERESTED: "not_interested", SignalKind.REPORT: "reports",
    }.get(kind)
    if attribute is not None:
        setattr(counts, attribute, getattr(counts, attribute) + 1)


@dataclass(frozen=True)
class BotPolicy:
    max_watch_ratio: float = 1.0
    watch_slack: dt.timedelta = dt.timedelta(seconds=2)
    burst_limit: int = 20
    burst_window: dt.timedelta = dt.timedelta(seconds=10)
    flag_ratio: float = 0.5
    flag_min: int = 40


@dataclass
class _AccountTrack:
    recent: deque[dt.datetime] = field(default_factory=deque)
    seen: int = 0
    discounted: int = 0


class BotGuard:
    """Per-account state of the discount rules (in memory; a flag is also stored)."""

    def __init__(self, policy: BotPolicy, flagged: set[str] | None = None) -> None:
        self._policy = policy
        self._flagged = set(flagged or ())
        self._tracks: dict[str, _AccountTrack] = {}

    def is_flagged(self, user: str) -> bool:
        return user in self._flagged

    @property
    def flagged(self) -> frozenset[str]:
        return frozenset(self._flagged)

    def judge(self, user: str, kind: SignalKind, *, now: dt.datetime, watch: dt.timedelta | None,
              longest_possible: dt.timedelta | None) -> str:
        """'' to count the signal, else why it is discounted. Newly flagged accounts show in `flagged`."""
        policy = self._policy
        track = self._tracks.setdefault(user, _AccountTrack())
        track.seen += 1
        reason = ""
        if user in self._flagged:
            reason = ACCOUNT_FLAGGED
        elif (watch is not None and longest_possible is not None
              and watch > longest_possible * policy.max_watch_ratio + policy.watch_slack):
            reason = IMPOSSIBLE_WATCH_TIME
        elif kind in ACTIVE_KINDS:
            while track.recent and now - track.recent[0] > policy.burst_window:
                track.recent.popleft()
            track.recent.append(now)
            if len(track.recent) > policy.burst_limit:
                reason = BURST
        if reason and reason != ACCOUNT_FLAGGED:
            track.discounted += 1
            if track.seen >= policy.flag_min and track.discounted / track.seen >= policy.flag_ratio:
                self._flagged.add(user)
        return reason

    def forget(self, user: str) -> None:
        self._tracks.pop(user, None)
        self._flagged.discard(user)
