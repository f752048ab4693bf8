"""The LIVE room's use cases: chat, moderation, Q&A and co-hosts.

Each write is one unit of the room store's group commit: it reads what it decides on (bans,
mutes, slow mode, moderators), decides, and writes the change, its room events and, for a
moderation action, its audit event, all in one transaction. Personal text is sealed under
its author's key before the unit (sealing may ask compliance for the key) and opened after.
The events reach viewers through the store's event listener, in commit order
(`room_feed.py`); nothing here waits on a viewer.

The LIVE session itself belongs to the ledger (`LiveSessions`, read through `LiveDirectory`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import weakref
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from libs.audit.events import Outcome
from libs.audit.outbox import TracedEvent
from libs.auth.principal import Principal
from libs.clock import Clock
from libs.errors import AlreadyExists, DomainError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.gifts.model.eligibility import AccountFacts, live_requirements, require_live_eligible
from services.gifts.model.ids import uuid7
from services.gifts.model.keywords import KeywordFilter, is_usable_keyword
from services.gifts.model.live import LiveSession, LiveState
from services.gifts.model.names import live_name, user_name
from services.gifts.model.room import (
    Ban,
    ChatDeleted,
    ChatMessage,
    ChatPosted,
    CoHost,
    CoHostState,
    GiftSent,
    Hosts,
    HostsChanged,
    MessageFiltered,
    Moderator,
    Question,
    QuestionChanged,
    QuestionState,
    RoomEvent,
    RoomPolicy,
    RoomSettings,
    SettingsChanged,
    Standing,
    Statement,
    StatementIssued,
    filter_statement,
    moderation_statement,
    require_may_be_moderated,
    require_may_post,
    require_moderator,
    require_question_move,
)
from services.gifts.model.views import FeedItem
from services.gifts.usecases.context import user_of

R = TypeVar("R")
CHAT_FIELD = "gifts.chat_message"
QUESTION_FIELD = "gifts.question"
FEED_PAGE = 500


class RoomUnit(Protocol):
    """What the room's use cases read and write in one unit (store/room.py's unit)."""

    def append(self, live_id: str, at: dt.datetime, body_of: Callable[[int], object]) -> RoomEvent: ...
    def last_feed_sequence(self, live_id: str) -> int: ...
    def chat_by_request(self, author: str, request_id: str) -> tuple[ChatMessage, bytes | None] | None: ...
    def chat(self, message_id: str) -> tuple[ChatMessage, bytes | None] | None: ...
    def insert_chat(self, message: ChatMessage, sealed_text: bytes, request_id: str) -> None: ...
    def delete_chat(self, message_id: str, now: dt.datetime) -> None: ...
    def last_post_at(self, live_id: str, user: str) -> dt.datetime | None: ...
    def question_by_request(self, author: str, request_id: str) -> tuple[Question, bytes | None] | None: ...
    def question(self, question_id: str) -> tuple[Question, bytes | None] | None: ...
    def insert_question(self, question: Question, sealed_text: bytes, request_id: str) -> None: ...
    def set_question_state(self, question_id: str, state: QuestionState) -> None: ...
    def add_vote(self, question_id: str, voter: str) -> bool: ...
    def is_moderator(self, creators: tuple[str, ...], user: str) -> bool: ...
    def moderator(self, creator: str, user: str) -> Moderator | None: ...
    def put_moderator(self, moderator: Moderator) -> None: ...
    def remove_moderator(self, creator: str, user: str) -> None: ...
    def bans(self, creators: tuple[str, ...], user: str) -> tuple[Ban, ...]: ...
    def put_ban(self, ban: Ban) -> None: ...
    def remove_ban(self, creator: str, user: str) -> None: ...
    def muted_until(self, live_id: str, user: str) -> dt.datetime | None: ...
    def put_mute(self, live_id: str, user: str, until: dt.datetime, reason: str, muted_by: str) -> None: ...
    def keywords(self, creators: tuple[str, ...]) -> tuple[str, ...]: ...
    def put_keywords(self, creator: str, keywords: tuple[str, ...]) -> None: ...
    def settings(self, live_id: str) -> RoomSettings: ...
    def put_settings(self, settings: RoomSettings) -> None: ...
    def co_hosts(self, live_id: str) -> list[CoHost]: ...
    def put_co_host(self, co_host: CoHost) -> None: ...
    def erase_texts_of(self, author: str) -> int: ...
    def record_audit(self, traced: TracedEvent) -> None: ...


class RoomStorage(Protocol):
    async def run(self, work: Callable[[RoomUnit], R],
                  on_refused: Callable[[RoomUnit, DomainError], None] | None = None) -> R: ...

    def read(self, query: Callable[[RoomUnit], R]) -> R: ...

    def written_by(self, author: str) -> tuple[list[tuple[ChatMessage, bytes | None]],
                                               list[tuple[Question, bytes | None]]]: ...


class LiveDirectory(Protocol):
    """The ledger's LIVE sessions and account facts, as the room reads them."""

    async def live(self, live_id: str) -> LiveSession | None: ...
    async def open_live_of(self, creator: str) -> LiveSession | None: ...
    async def account_facts(self, user_id: str) -> AccountFacts: ...
    async def feed(self, live_id: str, *, after_sequence: int, limit: int) -> list[FeedItem]: ...


class Sealer(Protocol):
    """`libs.privacy.fields.PersonalData`."""

    async def seal(self, subject: str, field_name: str, plaintext: str) -> bytes: ...
    async def open(self, subject: str, field_name: str, sealed: bytes | None) -> str | None: ...


class AuditEvents(Protocol):
    """`libs.audit.client.AuditClient.new_event`: built on the call's task, written in the unit."""

    def new_event(self, *, action: str, resource: str, outcome: Outcome, reason: str = "", subject: str = "",
                  attributes: dict[str, str] | None = None) -> TracedEvent: ...


class ActivitySignals(Protocol):
    """Room activity for ranking; never blocks and never fails the room (signals.py)."""

    def chat(self, live: str, viewer: str, at: dt.datetime) -> None: ...


@dataclasses.dataclass(frozen=True)
class Refusal:
    """The audit event a refused moderation-relevant call writes (built on the call's task);
    `audited` remembers the refusal, so the service's denial hook does not audit it again."""

    traced: TracedEvent
    audited: weakref.WeakSet[DomainError]

    def record(self, uow: RoomUnit, error: DomainError) -> None:
        uow.record_audit(self.traced.with_outcome(Outcome.REJECTED, error.reason))
        self.audited.add(error)


@functools.lru_cache(maxsize=1024)
def _filter_of(keywords: tuple[str, ...]) -> KeywordFilter:
    return KeywordFilter.of(keywords)


class Room:
    """The room's use cases over its ports."""

    def __init__(self, *, store: RoomStorage, lives: LiveDirectory, personal: Sealer, audit: AuditEvents,
                 signals: ActivitySignals, policy: RoomPolicy, min_followers: int, clock: Clock,
                 mint_id: Callable[[dt.datetime], str] = uuid7) -> None:
        self._store = store
        self._lives = lives
        self._personal = personal
        self._audit = audit
        self._signals = signals
        self.policy = policy
        self._min_followers = min_followers
        self._clock = clock
        self._mint_id = mint_id
        self.audited_refusals: weakref.WeakSet[DomainError] = weakref.WeakSet()

    # Sessions and who stands where in them

    async def session(self, creator: str, live_id: str, *, writing: bool = False) -> LiveSession:
        """The session `creators/{creator}/lives/{live_id}`; LIVE when `writing`."""
        session = await self._lives.live(live_id)
        if session is None or session.host != creator:
            name = live_name(creator, live_id)
            raise NotFound(f"no LIVE session {name}", resource_name=name, reason="LIVE_NOT_FOUND")
        if writing:
            self.require_open(session)
        return session

    def require_open(self, session: LiveSession) -> None:
        """Writes into a room need its session LIVE (checked after who may write, so a refusal
        for want of a right does not depend on the session's state)."""
        if session.state_at(self._clock()) is not LiveState.LIVE:
            raise FailedPrecondition("the LIVE session has ended", reason="LIVE_ENDED", metadata={"live": session.name})

    async def read_async(self, query: Callable[[RoomUnit], R]) -> R:
        return await asyncio.to_thread(self._store.read, query)

    async def admit_viewer(self, principal: Principal, session: LiveSession) -> tuple[Hosts, RoomSettings]:
        """Whether `principal` may watch: not banned, and adult where the room is age-restricted."""
        user = user_of(principal)
        today = self._clock().date()

        def check(uow: RoomUnit) -> tuple[Hosts, RoomSettings]:
            hosts = hosts_of(uow, session)
            settings = uow.settings(session.live_id)
            require_may_enter(principal, settings, today)
            bans = uow.bans(hosts.all, user)
            if bans:
                raise PermissionDenied("you are banned from this creator's rooms", reason="VIEWER_BANNED",
                                       metadata={"creator": f"creators/{bans[0].creator}"})
            return hosts, settings

        return await self.read_async(check)

    # Chat

    async def send_chat(self, principal: Principal, creator: str, live_id: str, request_id: str,
                        text: str) -> ChatMessage:
        user = user_of(principal)
        session = await self.session(creator, live_id, writing=True)
        sealed = await self._personal.seal(user_name(user), CHAT_FIELD, text)
        refusal = Refusal(self._audit.new_event(action="gifts.SendChatMessage", resource=session.name,
                                                outcome=Outcome.REJECTED, subject=user_name(user)),
                          self.audited_refusals)
        now = self._clock()

        def work(uow: RoomUnit) -> tuple[ChatMessage, bytes | None, bool]:
            found = uow.chat_by_request(user, request_id)
            if found is not None:
                return found[0], found[1], False
            hosts = hosts_of(uow, session)
            settings = uow.settings(live_id)
            require_may_enter(principal, settings, now.date())
            require_may_post(standing_of(uow, session, hosts, user, now), settings, now, live=session.name)
            self._require_unfiltered(uow, hosts, user, session.name, text, field_path="text")
            message_id = self._mint_id(now)
            event = uow.append(live_id, now, lambda sequence: ChatPosted(
                ChatMessage(message_id, live_id, session.host, user, text, now, sequence)))
            assert isinstance(event.body, ChatPosted)
            uow.insert_chat(event.body.message, sealed, request_id)
            return event.body.message, None, True

        message, stored_text, posted = await self._store.run(work, refusal.record)
        if not posted:
            return await self._retried(message, stored_text, text, CHAT_FIELD)
        self._signals.chat(session.name, user_name(user), now)
        return message

    async def _retried(self, message: ChatMessage, sealed: bytes | None, text: str, field: str) -> ChatMessage:
        """The first message of a retried request, if the retry asks the same."""
        first = await self._personal.open(user_name(message.author), field, sealed)
        if first is not None and first != text:
            raise AlreadyExists("this request id was used for another message", reason="REQUEST_ID_REUSED",
                                metadata={"request_id_field": "request_id"})
        return dataclasses.replace(message, text=first or "")

    def _require_unfiltered(self, uow: RoomUnit, hosts: Hosts, user: str, live: str, text: str, *,
                            field_path: str) -> None:
        for keywords, platform in ((self.policy.platform_keywords, True), (uow.keywords(hosts.all), False)):
            match = _filter_of(tuple(keywords)).first_match(text)
            if match is not None:
                raise MessageFiltered(filter_statement(user_name(user), live, match, platform=platform), field_path)

    async def delete_chat(self, principal: Principal, creator: str, live_id: str, message_id: str,
                          reason: str) -> tuple[ChatMessage, Statement]:
        moderator = user_of(principal)
        session = await self.session(creator, live_id)
        found = await self.read_async(lambda uow: uow.chat(message_id))
        if found is None or found[0].live_id != live_id:
            raise NotFound("no such chat message", reason="CHAT_MESSAGE_NOT_FOUND",
                           resource_name=f"{session.name}/chatMessages/{message_id}")
        resource = f"{session.name}/chatMessages/{message_id}"
        author = found[0].author
        statement = moderation_statement(user_name(author), "MESSAGE_REMOVED", resource, reason, moderator)
        traced = self._audit.new_event(action="gifts.DeleteChatMessage", resource=resource,
                                       outcome=Outcome.SUCCEEDED, subject=user_name(author),
                                       attributes={"reason": reason})
        refusal = Refusal(traced, self.audited_refusals)
        now = self._clock()

        def work(uow: RoomUnit) -> ChatMessage:
            hosts = hosts_of(uow, session)
            require_moderator(standing_of(uow, session, hosts, moderator, now), resource)
            current = uow.chat(message_id)
            assert current is not None
            message = dataclasses.replace(current[0], deleted=True)
            if current[0].deleted:
                return message
            uow.delete_chat(message_id, now)
            uow.append(live_id, now, lambda _: ChatDeleted(message_id, message.sequence))
            uow.append(live_id, now, lambda _: StatementIssued(statement))
            uow.record_audit(traced)
            return message

        return await self._store.run(work, refusal.record), statement

    # Moderation

    async def mute(self, principal: Principal, creator: str, live_id: str, user: str, duration: dt.timedelta,
                   reason: str) -> tuple[dt.datetime, Statement]:
        moderator = user_of(principal)
        session = await self.session(creator, live_id)
        now = self._clock()
        until = now + duration
        statement = moderation_statement(user_name(user), "MUTED", session.name, reason, moderator, ends_at=until)
        traced = self._audit.new_event(action="gifts.MuteViewer", resource=session.name, outcome=Outcome.SUCCEEDED,
                                       subject=user_name(user),
                                       attributes={"reason": reason, "until": until.isoformat()})

        def work(uow: RoomUnit) -> None:
            hosts = hosts_of(uow, session)
            require_moderator(standing_of(uow, session, hosts, moderator, now), session.name)
            require_may_be_moderated(standing_of(uow, session, hosts, user, now), session.name)
            self.require_open(session)
            uow.put_mute(live_id, user, until, reason, moderator)
            uow.append(live_id, now, lambda _: StatementIssued(statement))
            uow.record_audit(traced)

        await self._store.run(work, Refusal(traced, self.audited_refusals).record)
        return until, statement

    async def ban(self, principal: Principal, creator: str, user: str, reason: str) -> tuple[Ban, Statement]:
        moderator = user_of(principal)
        session = await self._lives.open_live_of(creator)
        now = self._clock()
        resource = f"creators/{creator}/bans/{user}"
        statement = moderation_statement(user_name(user), "BANNED", f"creators/{creator}", reason, moderator)
        traced = self._audit.new_event(action="gifts.BanViewer", resource=resource, outcome=Outcome.SUCCEEDED,
                                       subject=user_name(user), attributes={"reason": reason})

        def work(uow: RoomUnit) -> Ban:
            require_creator_moderator(uow, creator, moderator, resource)
            require_may_be_moderated(Standing(user, Hosts(creator), moderates=user == creator or uow.is_moderator(
                (creator,), user)), resource)
            existing = uow.bans((creator,), user)
            if existing:
                return existing[0]
            ban = Ban(creator, user, reason, moderator, now)
            uow.put_ban(ban)
            if session is not None and session.state_at(now) is LiveState.LIVE:
                uow.append(session.live_id, now, lambda _: StatementIssued(statement, closes_stream=True))
            uow.record_audit(traced)
            return ban

        return await self._store.run(work, Refusal(traced, self.audited_refusals).record), statement

    async def unban(self, principal: Principal, creator: str, user: str) -> Ban:
        moderator = user_of(principal)
        resource = f"creators/{creator}/bans/{user}"
        traced = self._audit.new_event(action="gifts.UnbanViewer", resource=resource, outcome=Outcome.SUCCEEDED,
                                       subject=user_name(user))

        def work(uow: RoomUnit) -> Ban:
            require_creator_moderator(uow, creator, moderator, resource)
            existing = uow.bans((creator,), user)
            if not existing:
                raise NotFound("the user is not banned", resource_name=resource, reason="BAN_NOT_FOUND")
            uow.remove_ban(creator, user)
            uow.record_audit(traced)
            return existing[0]

        return await self._store.run(work, Refusal(traced, self.audited_refusals).record)

    async def appoint_moderator(self, principal: Principal, creator: str, user: str) -> Moderator:
        require_creator(principal, creator)
        if user == creator:
            raise InvalidArgument.for_field("user", "a creator moderates their own rooms already")
        now = self._clock()
        resource = f"creators/{creator}/moderators/{user}"
        traced = self._audit.new_event(action="gifts.AppointModerator", resource=resource,
                                       outcome=Outcome.SUCCEEDED, subject=user_name(user))

        def work(uow: RoomUnit) -> Moderator:
            existing = uow.moderator(creator, user)
            if existing is not None:
                return existing
            moderator = Moderator(creator, user, now)
            uow.put_moderator(moderator)
            uow.record_audit(traced)
            return moderator

        return await self._store.run(work)

    async def remove_moderator(self, principal: Principal, creator: str, user: str) -> Moderator:
        require_creator(principal, creator)
        resource = f"creators/{creator}/moderators/{user}"
        traced = self._audit.new_event(action="gifts.RemoveModerator", resource=resource,
                                       outcome=Outcome.SUCCEEDED, subject=user_name(user))

        def work(uow: RoomUnit) -> Moderator:
            existing = uow.moderator(creator, user)
            if existing is None:
                raise NotFound("the user is not a moderator", resource_name=resource, reason="MODERATOR_NOT_FOUND")
            uow.remove_moderator(creator, user)
            uow.record_audit(traced)
            return existing

        return await self._store.run(work)

    async def update_keywords(self, principal: Principal, creator: str, keywords: Sequence[str]) -> tuple[str, ...]:
        require_creator(principal, creator)
        for index, keyword in enumerate(keywords):
            if not is_usable_keyword(keyword):
                raise InvalidArgument.for_field(f"keyword_filter.keywords[{index}]",
                                                "must keep at least two letters or digits once normalised")
        unique = tuple(dict.fromkeys(keyword.strip() for keyword in keywords))
        traced = self._audit.new_event(action="gifts.UpdateKeywordFilter", resource=f"creators/{creator}/keywordFilter",
                                       outcome=Outcome.SUCCEEDED, attributes={"keywords": str(len(unique))})

        def work(uow: RoomUnit) -> None:
            uow.put_keywords(creator, unique)
            uow.record_audit(traced)

        await self._store.run(work)
        return unique

    async def keywords(self, principal: Principal, creator: str) -> tuple[str, ...]:
        caller = user_of(principal)

        def query(uow: RoomUnit) -> tuple[str, ...]:
            require_creator_moderator(uow, creator, caller, f"creators/{creator}/keywordFilter")
            return uow.keywords((creator,))

        return await self.read_async(query)

    async def update_settings(self, principal: Principal, creator: str, live_id: str, slow_mode: dt.timedelta,
                              age_restricted: bool) -> RoomSettings:
        session = await self.session(creator, live_id)
        require_host(principal, session)
        self.require_open(session)
        settings = RoomSettings(live_id, slow_mode, age_restricted)
        now = self._clock()
        traced = self._audit.new_event(action="gifts.UpdateRoomSettings", resource=f"{session.name}/roomSettings",
                                       outcome=Outcome.SUCCEEDED,
                                       attributes={"slow_mode_seconds": str(slow_mode.total_seconds()),
                                                   "age_restricted": str(age_restricted).lower()})

        def work(uow: RoomUnit) -> None:
            uow.put_settings(settings)
            uow.append(live_id, now, lambda _: SettingsChanged(settings))
            uow.record_audit(traced)

        await self._store.run(work)
        return settings

    # Q&A

    async def submit_question(self, principal: Principal, creator: str, live_id: str, request_id: str,
                              text: str) -> Question:
        user = user_of(principal)
        session = await self.session(creator, live_id, writing=True)
        sealed = await self._personal.seal(user_name(user), QUESTION_FIELD, text)
        refusal = Refusal(self._audit.new_event(action="gifts.SubmitQuestion", resource=session.name,
                                                outcome=Outcome.REJECTED, subject=user_name(user)),
                          self.audited_refusals)
        now = self._clock()

        def work(uow: RoomUnit) -> tuple[Question, bytes | None, bool]:
            found = uow.question_by_request(user, request_id)
            if found is not None:
                return found[0], found[1], False
            hosts = hosts_of(uow, session)
            settings = uow.settings(live_id)
            require_may_enter(principal, settings, now.date())
            require_may_post(standing_of(uow, session, hosts, user, now), settings, now, live=session.name)
            self._require_unfiltered(uow, hosts, user, session.name, text, field_path="text")
            question = Question(self._mint_id(now), live_id, session.host, user, text, QuestionState.OPEN, 0, now)
            uow.insert_question(question, sealed, request_id)
            uow.append(live_id, now, lambda _: QuestionChanged(question))
            return question, None, True

        question, stored_text, submitted = await self._store.run(work, refusal.record)
        if submitted:
            return question
        first = await self._personal.open(user_name(user), QUESTION_FIELD, stored_text)
        if first is not None and first != text:
            raise AlreadyExists("this request id was used for another question", reason="REQUEST_ID_REUSED")
        return dataclasses.replace(question, text=first or "")

    async def _question_text(self, session: LiveSession, question_id: str) -> tuple[Question, str]:
        found = await self.read_async(lambda uow: uow.question(question_id))
        if found is None or found[0].live_id != session.live_id:
            name = f"{session.name}/questions/{question_id}"
            raise NotFound("no such question", resource_name=name, reason="QUESTION_NOT_FOUND")
        return found[0], await self._personal.open(user_name(found[0].author), QUESTION_FIELD, found[1]) or ""

    async def upvote(self, principal: Principal, creator: str, live_id: str, question_id: str) -> Question:
        user = user_of(principal)
        session = await self.session(creator, live_id, writing=True)
        question, text = await self._question_text(session, question_id)
        now = self._clock()

        def work(uow: RoomUnit) -> Question:
            current = uow.question(question_id)
            assert current is not None
            found = dataclasses.replace(current[0], text=text)
            if found.author == user:
                raise FailedPrecondition("you cannot upvote your own question", reason="OWN_QUESTION")
            hosts = hosts_of(uow, session)
            standing = standing_of(uow, session, hosts, user, now)
            require_may_post(dataclasses.replace(standing, last_post_at=None), uow.settings(live_id), now,
                             live=session.name)
            if not uow.add_vote(question_id, user):
                return found
            voted = dataclasses.replace(found, upvotes=found.upvotes + 1)
            uow.append(live_id, now, lambda _: QuestionChanged(voted))
            return voted

        return await self._store.run(work)

    async def update_question_state(self, principal: Principal, creator: str, live_id: str, question_id: str,
                                    state: QuestionState, reason: str) -> Question:
        moderator = user_of(principal)
        session = await self.session(creator, live_id)
        question, text = await self._question_text(session, question_id)
        name = f"{session.name}/questions/{question_id}"
        if state is QuestionState.DISMISSED and not reason:
            raise InvalidArgument.for_field("reason", "a dismissal needs a reason for its author")
        statement = moderation_statement(user_name(question.author), "QUESTION_DISMISSED", name, reason, moderator)
        traced = self._audit.new_event(action="gifts.UpdateQuestionState", resource=name, outcome=Outcome.SUCCEEDED,
                                       subject=user_name(question.author),
                                       attributes={"state": state.value, "reason": reason})
        now = self._clock()

        def work(uow: RoomUnit) -> Question:
            hosts = hosts_of(uow, session)
            require_moderator(standing_of(uow, session, hosts, moderator, now), name)
            current = uow.question(question_id)
            assert current is not None
            require_question_move(name, current[0].state, state)
            if current[0].state is state:
                return dataclasses.replace(current[0], text=text if state is not QuestionState.DISMISSED else "")
            moved = dataclasses.replace(current[0], state=state,
                                        text="" if state is QuestionState.DISMISSED else text)
            uow.set_question_state(question_id, state)
            uow.append(live_id, now, lambda _: QuestionChanged(moved))
            if state is QuestionState.DISMISSED:
                uow.append(live_id, now, lambda _: StatementIssued(statement))
                uow.record_audit(traced)
            return moved

        return await self._store.run(work, Refusal(traced, self.audited_refusals).record)

    # Co-hosts

    async def invite_co_host(self, principal: Principal, creator: str, live_id: str, invitee: str) -> CoHost:
        session = await self.session(creator, live_id)
        require_host(principal, session)
        self.require_open(session)
        if invitee == session.host:
            raise FailedPrecondition("a host cannot co-host their own session", reason="CO_HOST_IS_HOST")
        facts = await self._lives.account_facts(invitee)
        # The invitee's age is checked when they accept, from their own token.
        for requirement in live_requirements(facts, min_followers=self._min_followers, is_adult=True):
            if not requirement.met:
                raise FailedPrecondition(f"the invited creator cannot go LIVE: {requirement.detail}",
                                         reason=requirement.reason, metadata=requirement.facts)
        now = self._clock()

        def work(uow: RoomUnit) -> CoHost:
            parts = uow.co_hosts(live_id)
            for part in parts:
                if part.co_host == invitee and part.state is not CoHostState.ENDED:
                    return part
            if any(part.state is not CoHostState.ENDED for part in parts):
                raise FailedPrecondition("the session has a co-host already", reason="CO_HOST_LIMIT")
            invited = CoHost(live_id, session.host, invitee, CoHostState.INVITED, now)
            uow.put_co_host(invited)
            return invited

        return await self._store.run(work)

    async def accept_co_host(self, principal: Principal, creator: str, live_id: str, co_host: str) -> CoHost:
        session = await self.session(creator, live_id)
        if user_of(principal) != co_host:
            raise PermissionDenied("only the invited creator may accept", reason="NOT_INVITED_CO_HOST")
        self.require_open(session)
        facts = await self._lives.account_facts(co_host)
        now = self._clock()
        require_live_eligible(principal, facts, min_followers=self._min_followers, today=now.date())

        def work(uow: RoomUnit) -> CoHost:
            part = next((part for part in uow.co_hosts(live_id) if part.co_host == co_host), None)
            if part is not None and part.state is CoHostState.ACTIVE:
                return part
            if part is None or part.state is not CoHostState.INVITED:
                raise FailedPrecondition("there is no open invitation", reason="CO_HOST_NOT_INVITED")
            active = dataclasses.replace(part, state=CoHostState.ACTIVE, started_at=now)
            uow.put_co_host(active)
            uow.append(live_id, now, lambda _: HostsChanged((session.host, co_host), active))
            return active

        return await self._store.run(work)

    async def end_co_host(self, principal: Principal, creator: str, live_id: str, co_host: str) -> CoHost:
        session = await self.session(creator, live_id)
        caller = user_of(principal)
        if caller not in (co_host, session.host):
            raise PermissionDenied("only the co-host or the session's host may end this part",
                                   reason="NOT_LIVE_HOST")
        now = self._clock()

        def work(uow: RoomUnit) -> CoHost:
            part = next((part for part in uow.co_hosts(live_id) if part.co_host == co_host), None)
            if part is None:
                raise NotFound("no such co-host", reason="CO_HOST_NOT_FOUND",
                               resource_name=f"{session.name}/coHosts/{co_host}")
            if part.state is CoHostState.ENDED:
                return part
            ended = dataclasses.replace(part, state=CoHostState.ENDED, ended_at=now)
            uow.put_co_host(ended)
            uow.append(live_id, now, lambda _: HostsChanged((session.host,), ended))
            return ended

        return await self._store.run(work)

    async def gift_recipient(self, creator: str, live_id: str, recipient: str) -> str:
        """The host a viewer's gift goes to: the session's creator or its active co-host."""
        session = await self.session(creator, live_id)
        if recipient == session.host:
            return recipient
        hosts = await self.read_async(lambda uow: hosts_of(uow, session))
        if recipient != hosts.co_host:
            raise FailedPrecondition("the recipient is not a host of this session", reason="NOT_A_HOST",
                                     metadata={"recipient": f"creators/{recipient}", "live": session.name})
        return recipient

    # Gifts from the ledger's feed

    async def copy_gifts(self, live_id: str) -> int:
        """Copy the ledger feed's new gifts into the room's log, at their place among the chat."""
        after = await self.read_async(lambda uow: uow.last_feed_sequence(live_id))
        items = await self._lives.feed(live_id, after_sequence=after, limit=FEED_PAGE)
        if not items:
            return 0

        def work(uow: RoomUnit) -> int:
            last = uow.last_feed_sequence(live_id)
            fresh = [item for item in items if item.sequence > last]
            for item in fresh:
                uow.append(live_id, item.posted_at, gift_event(item))
            return len(fresh)

        return await self._store.run(work)

    # The author's part of a data-subject request

    async def export_subject(self, user: str) -> dict[str, list[dict[str, object]]]:
        """What `user` wrote in LIVE rooms, opened (texts of an erased subject read as '')."""
        chats, questions = await asyncio.to_thread(self._store.written_by, user)
        sections: dict[str, list[dict[str, object]]] = {}
        if chats:
            sections["live_chat_messages"] = [
                {"live": live_name(message.host, message.live_id), "message": message.message_id,
                 "sent_at": message.sent_at.isoformat(), "deleted": message.deleted,
                 "text": await self.open_text(user, sealed, question=False)} for message, sealed in chats]
        if questions:
            sections["live_questions"] = [
                {"live": live_name(question.host, question.live_id), "question": question.question_id,
                 "submitted_at": question.submitted_at.isoformat(), "state": question.state.value,
                 "text": await self.open_text(user, sealed, question=True)} for question, sealed in questions]
        return sections

    async def erase_subject(self, user: str) -> str:
        """Erase `user`'s chat and question texts; the summary of what was done."""
        erased = await self._store.run(lambda uow: uow.erase_texts_of(user))
        return f"LIVE chat messages and questions: {erased} texts erased (and sealed under the shredded key)"

    # Texts for viewers

    async def open_text(self, author: str, sealed: bytes | None, *, question: bool) -> str:
        return await self._personal.open(user_name(author), QUESTION_FIELD if question else CHAT_FIELD, sealed) or ""


def gift_event(item: FeedItem) -> Callable[[int], GiftSent]:
    gift = item.gift
    return lambda _: GiftSent(gift.gift_id, gift.creator, gift.sender, gift.catalog_gift, gift.count, gift.coins,
                              gift.diamonds, gift.fee_coins, gift.sent_at, item.sequence)


def hosts_of(uow: RoomUnit, session: LiveSession) -> Hosts:
    active = next((part.co_host for part in uow.co_hosts(session.live_id) if part.state is CoHostState.ACTIVE), None)
    return Hosts(session.host, active)


def standing_of(uow: RoomUnit, session: LiveSession, hosts: Hosts, user: str, now: dt.datetime) -> Standing:
    moderates = user in hosts.all or uow.is_moderator(hosts.all, user)
    return Standing(user, hosts, moderates, banned_by=uow.bans(hosts.all, user),
                    muted_until=uow.muted_until(session.live_id, user),
                    last_post_at=uow.last_post_at(session.live_id, user))


def require_may_enter(principal: Principal, settings: RoomSettings, today: dt.date) -> None:
    if settings.age_restricted and not principal.is_adult_on(today):
        raise PermissionDenied("this room is for users of 18 and over", reason="ROOM_AGE_RESTRICTED")


def require_creator(principal: Principal, creator: str) -> None:
    if user_of(principal) != creator:
        raise PermissionDenied("only the creator may change this", reason="NOT_CREATOR",
                               metadata={"creator": f"creators/{creator}"})


def require_creator_moderator(uow: RoomUnit, creator: str, user: str, resource: str) -> None:
    if user != creator and not uow.is_moderator((creator,), user):
        raise PermissionDenied("only the creator and their moderators may do this", reason="NOT_ROOM_MODERATOR",
                               metadata={"resource": resource})


def require_host(principal: Principal, session: LiveSession) -> None:
    if user_of(principal) != session.host:
        raise PermissionDenied("only the session's host may do this", reason="NOT_LIVE_HOST",
                               metadata={"live": session.name})
