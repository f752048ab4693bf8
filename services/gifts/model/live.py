"""LIVE sessions: one open session per host, a hard maximum duration, gifts only while LIVE.

    (none) --StartLive--> LIVE --EndLive by the host---> ENDED (ENDED_BY_CREATOR)
                               --EndLive by an admin--> ENDED (STOPPED_BY_PLATFORM)
                               --deadline passes------> ENDED (MAX_DURATION_REACHED)

A session past its deadline is ENDED from that instant, whether or not a sweep has
written that down yet; `state_at` is the single place that decides.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Protocol

from libs.errors import FailedPrecondition, NotFound
from services.gifts.model.names import UNKNOWN, live_name


class LiveState(enum.StrEnum):
    LIVE = "LIVE"
    ENDED = "ENDED"


class EndReason(enum.StrEnum):
    ENDED_BY_CREATOR = "ENDED_BY_CREATOR"
    MAX_DURATION_REACHED = "MAX_DURATION_REACHED"
    STOPPED_BY_PLATFORM = "STOPPED_BY_PLATFORM"


@dataclass(frozen=True)
class LivePolicy:
    min_followers: int = 1_000
    max_duration: dt.timedelta = dt.timedelta(hours=4)


# The LIVE title's field name under libs.privacy (sealing binds a ciphertext to it).
LIVE_TITLE = "gifts.live_title"


@dataclass(frozen=True)
class LiveSession:
    live_id: str
    host: str  # user id
    # The title as stored: sealed under the host's data key (libs.privacy text form); the servicer
    # opens it for responses, so the domain never holds the creator's words.
    sealed_title: str
    started_at: dt.datetime
    deadline: dt.datetime
    gifts_barred_reason: str  # '' when the host may receive gifts
    ended_at: dt.datetime | None = None
    end_reason: str | None = None

    def state_at(self, now: dt.datetime) -> LiveState:
        if self.ended_at is not None or now >= self.deadline:
            return LiveState.ENDED
        return LiveState.LIVE

    @property
    def name(self) -> str:
        return live_name(self.host, self.live_id)


class LiveSessions(Protocol):
    def insert_live(self, session: LiveSession) -> None:
        """Raises `LiveAlreadyOpen` if the host has a session that is not ended."""
        ...

    def live(self, live_id: str) -> LiveSession | None: ...

    def open_live_of(self, host: str) -> LiveSession | None: ...

    def end_live(self, live_id: str, ended_at: dt.datetime, reason: str) -> bool:
        """Record the end; False if it was already recorded."""
        ...

    def overdue_lives(self, now: dt.datetime, limit: int) -> list[LiveSession]: ...


class LiveAlreadyOpen(FailedPrecondition):
    def __init__(self, host: str, live_id: str) -> None:
        super().__init__("the host is already LIVE", reason="ALREADY_LIVE",
                         metadata={"live": live_name(host, live_id)})


def require_live(sessions: LiveSessions, live_id: str, now: dt.datetime, *, host: str | None = None) -> LiveSession:
    session = sessions.live(live_id)
    if session is None or (host is not None and session.host != host):
        name = live_name(host or UNKNOWN, live_id)
        raise NotFound(f"no LIVE session {name}", resource_name=name, reason="LIVE_NOT_FOUND")
    if session.state_at(now) is not LiveState.LIVE:
        raise FailedPrecondition("the LIVE session has ended", reason="LIVE_NOT_ACTIVE",
                                 metadata={"live": session.name})
    return session
