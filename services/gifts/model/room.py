"""The room around a LIVE session: chat, Q&A, moderation and co-hosts, as plain values.

Who moderates a room: its hosts (the session's creator and an active co-host) and each
host's moderators. Bans are per creator and apply in every room that creator hosts or
co-hosts; mutes are per session and end by the clock. Hosts and moderators are exempt from
slow mode and cannot be muted or banned in the rooms they moderate.

Question lifecycle:

    OPEN --> ANSWERING --> ANSWERED
      \\          \\
       +----------+--> DISMISSED   (a moderation action: the author gets a statement of reasons)

Everything that happens in a room is a `RoomEvent` with the room's next sequence number
(1, 2, 3, ...): that number is the cursor a viewer resumes from. A deleted message keeps its
number, so the sequence has no gaps, but the message itself is never replayed.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from libs.errors import FailedPrecondition, FieldViolation, InvalidArgument, PermissionDenied, ResourceExhausted
from services.gifts.model.names import user_name

# The platform's own list (the creator's list adds to it). Kept short and configurable:
# the real list is an operator's, published in the community guidelines.
PLATFORM_KEYWORDS = ("spam", "scam", "hurensohn", "nazi", "kys")
REDRESS = ("You can contest this decision through the in-app complaint form (DSA Art. 20) within six months; "
           "you may also use an out-of-court dispute settlement body (DSA Art. 21) or a court.")
PLATFORM_GROUND = "Limelight community guidelines, section 'Harassment and spam'"
CREATOR_GROUND = "the creator's room rules"


@dataclass(frozen=True)
class RoomPolicy:
    """The room's tunables, published with the rest of the gifts configuration."""

    platform_keywords: tuple[str, ...] = PLATFORM_KEYWORDS
    # A subscriber receives at most one batch per interval (the bound: 250 ms).
    batch_interval: dt.timedelta = dt.timedelta(milliseconds=250)
    # From this many viewers on a room is large: each batch shows a sample of its chat.
    large_room_viewers: int = 1_000
    chat_per_batch_in_large_rooms: int = 25
    # A fresh stream (no cursor) starts with this much of the room's history.
    recent_events: int = 50
    # How far behind a slow subscriber may fall before its stream is closed (it resumes).
    max_pending_events: int = 5_000
    max_keywords: int = 500
    # Pins are read from the shop this often while a room has viewers.
    pins_refresh: dt.timedelta = dt.timedelta(seconds=5)


class QuestionState(enum.StrEnum):
    OPEN = "OPEN"
    ANSWERING = "ANSWERING"
    ANSWERED = "ANSWERED"
    DISMISSED = "DISMISSED"


_QUESTION_MOVES = {
    QuestionState.OPEN: {QuestionState.ANSWERING, QuestionState.ANSWERED, QuestionState.DISMISSED},
    QuestionState.ANSWERING: {QuestionState.ANSWERED, QuestionState.DISMISSED},
    QuestionState.ANSWERED: set(),
    QuestionState.DISMISSED: set(),
}


def require_question_move(question_name: str, current: QuestionState, target: QuestionState) -> None:
    if target is current:
        return
    if target not in _QUESTION_MOVES[current]:
        raise FailedPrecondition(f"a question that is {current} cannot become {target}",
                                 reason="QUESTION_STATE_CHANGE",
                                 metadata={"question": question_name, "state": current, "requested": target})


class CoHostState(enum.StrEnum):
    INVITED = "INVITED"
    ACTIVE = "ACTIVE"
    ENDED = "ENDED"


@dataclass(frozen=True)
class RoomSettings:
    live_id: str
    slow_mode: dt.timedelta = dt.timedelta(0)
    age_restricted: bool = False


@dataclass(frozen=True)
class ChatMessage:
    message_id: str
    live_id: str
    host: str  # the session's creator, whose name the message's resource name carries
    author: str  # user id
    text: str  # '' once deleted
    sent_at: dt.datetime
    sequence: int
    deleted: bool = False


@dataclass(frozen=True)
class Question:
    question_id: str
    live_id: str
    host: str
    author: str
    text: str  # '' once dismissed
    state: QuestionState
    upvotes: int
    submitted_at: dt.datetime


@dataclass(frozen=True)
class Ban:
    creator: str
    user: str
    reason: str
    banned_by: str
    banned_at: dt.datetime


@dataclass(frozen=True)
class Moderator:
    creator: str
    user: str
    appointed_at: dt.datetime


@dataclass(frozen=True)
class CoHost:
    live_id: str
    host: str  # the session's creator
    co_host: str
    state: CoHostState
    invited_at: dt.datetime
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None


@dataclass(frozen=True)
class Statement:
    """A statement of reasons (DSA Art. 17) for one restriction of one user."""

    user: str  # whom it is addressed to
    decision: str
    resource: str
    facts: str
    ground: str
    automated: bool
    decided_by: str
    ends_at: dt.datetime | None = None
    redress: str = REDRESS


# What happens in a room: the bodies of its events.


@dataclass(frozen=True)
class ChatPosted:
    message: ChatMessage


@dataclass(frozen=True)
class ChatDeleted:
    message_id: str
    message_sequence: int  # where the deleted message was, so a replay after it can skip this


@dataclass(frozen=True)
class GiftSent:
    """A gift from the ledger's feed, copied into the room at its place among the chat."""

    gift_id: str
    creator: str
    sender: str
    catalog_gift: str
    count: int
    coins: int
    diamonds: int
    fee_coins: int
    sent_at: dt.datetime
    feed_sequence: int


@dataclass(frozen=True)
class QuestionChanged:
    question: Question


@dataclass(frozen=True)
class StatementIssued:
    """Addressed to one viewer only; `closes_stream` for a ban (their streams end after it)."""

    statement: Statement
    closes_stream: bool = False


@dataclass(frozen=True)
class HostsChanged:
    hosts: tuple[str, ...]
    co_host: CoHost


@dataclass(frozen=True)
class SettingsChanged:
    settings: RoomSettings


@dataclass(frozen=True)
class Pin:
    """A product pinned in the session, as the shop reports it."""

    pin: str
    product: str
    disclosure_label: str


@dataclass(frozen=True)
class PinsChanged:
    """The shop's active pins now (state, not history: never stored, sequence 0)."""

    pins: tuple[Pin, ...]


@dataclass(frozen=True)
class LiveEnded:
    """The session ended: streams close after delivering what came before."""


EventBody = (ChatPosted | ChatDeleted | GiftSent | QuestionChanged | StatementIssued | HostsChanged
             | SettingsChanged | PinsChanged | LiveEnded)


@dataclass(frozen=True)
class RoomEvent:
    live_id: str
    sequence: int
    at: dt.datetime
    body: EventBody

    @property
    def audience(self) -> str | None:
        """The one user this event is for, or None for every viewer."""
        if isinstance(self.body, StatementIssued):
            return self.body.statement.user
        return None

    @property
    def droppable(self) -> bool:
        """Only chat may be sampled away in a large room; gifts and moderation never are."""
        return isinstance(self.body, ChatPosted)


@dataclass(frozen=True)
class Hosts:
    """The session's creator and its active co-host, if any."""

    creator: str
    co_host: str | None = None

    @property
    def all(self) -> tuple[str, ...]:
        return (self.creator,) if self.co_host is None else (self.creator, self.co_host)


@dataclass(frozen=True)
class Standing:
    """What a room knows about one user in it, read in the unit that decides."""

    user: str
    hosts: Hosts
    moderates: bool  # a host, or a moderator of a host
    banned_by: tuple[Ban, ...] = ()
    muted_until: dt.datetime | None = None
    last_post_at: dt.datetime | None = None


def require_moderator(standing: Standing, resource: str) -> None:
    if not standing.moderates:
        raise PermissionDenied("only the hosts and their moderators may moderate this room",
                               reason="NOT_ROOM_MODERATOR", metadata={"resource": resource})


def require_may_post(standing: Standing, settings: RoomSettings, now: dt.datetime, *, live: str) -> None:
    """Bans, then mutes, then slow mode: the refusals of a chat message or a question."""
    if standing.banned_by:
        ban = standing.banned_by[0]
        raise PermissionDenied("you are banned from this creator's rooms", reason="VIEWER_BANNED",
                               metadata={"creator": f"creators/{ban.creator}", "ban_reason": ban.reason})
    if standing.moderates:
        return
    if standing.muted_until is not None and now < standing.muted_until:
        raise PermissionDenied("you are muted in this room", reason="VIEWER_MUTED",
                               metadata={"live": live, "until": standing.muted_until.isoformat()})
    if settings.slow_mode and standing.last_post_at is not None:
        wait = standing.last_post_at + settings.slow_mode - now
        if wait > dt.timedelta(0):
            raise ResourceExhausted("slow mode: wait before posting again", reason="SLOW_MODE",
                                    metadata={"live": live, "slow_mode_seconds": str(settings.slow_mode.seconds)},
                                    retry_delay=wait)


def require_may_be_moderated(target: Standing, resource: str) -> None:
    if target.moderates:
        raise FailedPrecondition("a host or moderator of this room cannot be muted or banned in it",
                                 reason="CANNOT_MODERATE_MODERATOR", metadata={"user": user_name(target.user),
                                                                               "resource": resource})


class MessageFiltered(InvalidArgument):
    """A keyword filter refused the text; the statement of reasons goes back to its sender."""

    def __init__(self, statement: Statement, field_path: str) -> None:
        super().__init__(f"{field_path}: the text contains a filtered word", reason="MESSAGE_FILTERED",
                         metadata=statement_metadata(statement))
        self.violations = [FieldViolation(field_path, "contains a filtered word", "MESSAGE_FILTERED")]
        self.statement = statement


def statement_metadata(statement: Statement) -> dict[str, str]:
    """A statement of reasons as ErrorInfo metadata, for a refusal that returns no message."""
    return {"decision": statement.decision, "resource": statement.resource, "facts": statement.facts,
            "ground": statement.ground, "automated": str(statement.automated).lower(),
            "decided_by": statement.decided_by, "redress": statement.redress}


def filter_statement(user: str, live: str, keyword: str, *, platform: bool) -> Statement:
    return Statement(user, "MESSAGE_REFUSED", live,
                     f"the message contained a filtered word ('{keyword}', as normalised)",
                     PLATFORM_GROUND if platform else CREATOR_GROUND, True, "services/gifts")


def moderation_statement(user: str, decision: str, resource: str, facts: str, moderator: str, *,
                         ends_at: dt.datetime | None = None) -> Statement:
    return Statement(user, decision, resource, facts, CREATOR_GROUND, False, user_name(moderator), ends_at)
