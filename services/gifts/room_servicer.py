"""RoomService's handlers: parse, call the room's use case, render. StreamRoom loops and yields.

The contract is protos/limelight/gifts/v1/room.proto. Errors are `libs.errors` classes, which
the kit maps to status codes and google.rpc details.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import AsyncIterator
from typing import Any, Protocol

import grpc
from limelight.gifts.v1 import room_pb2, room_pb2_grpc

from libs.errors import InvalidArgument, PermissionDenied, Unavailable
from libs.kit.context import current_principal
from libs.resource_names import ResourcePattern
from services.gifts import room_messages as render
from services.gifts.model import names
from services.gifts.model.access import acting
from services.gifts.model.live import LiveState
from services.gifts.model.room import ChatDeleted, statement_metadata
from services.gifts.room_feed import Batch, StreamClosed
from services.gifts.room_wiring import RoomParts, view_time

CHAT_MESSAGE = ResourcePattern("creators/{creator}/lives/{live}/chatMessages/{chat_message}")
QUESTION = ResourcePattern("creators/{creator}/lives/{live}/questions/{question}")
CO_HOST = ResourcePattern("creators/{creator}/lives/{live}/coHosts/{co_host}")
MODERATOR = ResourcePattern("creators/{creator}/moderators/{moderator}")
BAN = ResourcePattern("creators/{creator}/bans/{ban}")
KEYWORD_FILTER = ResourcePattern("creators/{creator}/keywordFilter")
ROOM_SETTINGS = ResourcePattern("creators/{creator}/lives/{live}/roomSettings")
REPLAY_PAGE = 500
Call = grpc.aio.ServicerContext[Any, Any]


def _ids(pattern: ResourcePattern, name: str, *, field: str) -> tuple[str, ...]:
    parsed = pattern.parse(name, field=field)
    return tuple(parsed[variable] for variable in pattern.variables)


def encode_cursor(live_id: str, sequence: int) -> str:
    return base64.urlsafe_b64encode(f"{live_id}:{sequence}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str, live_id: str) -> int:
    try:
        live, sequence = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode().split(":")
        if live != live_id or int(sequence) < 0:
            raise ValueError(cursor)
        return int(sequence)
    except (ValueError, binascii.Error, UnicodeDecodeError) as error:
        raise InvalidArgument.for_field("cursor", "not a cursor of this room's stream") from error


class RoomSource(Protocol):
    @property
    def room_parts(self) -> RoomParts: ...


class RoomServicer(room_pb2_grpc.RoomServiceServicer):
    def __init__(self, source: RoomSource) -> None:
        self._source = source

    @property
    def _parts(self) -> RoomParts:
        return self._source.room_parts

    # Chat

    async def SendChatMessage(self, request: room_pb2.SendChatMessageRequest,
                              context: Call) -> room_pb2.SendChatMessageResponse:
        creator, live_id = _ids(names.LIVE, request.live, field="live")
        message = await self._parts.room.send_chat(acting(current_principal()), creator, live_id,
                                                   request.request_id, request.text)
        return room_pb2.SendChatMessageResponse(chat_message=render.chat_message(message))

    async def StreamRoom(self, request: room_pb2.StreamRoomRequest,
                         context: Call) -> AsyncIterator[room_pb2.StreamRoomResponse]:
        creator, live_id = _ids(names.LIVE, request.live, field="live")
        after = decode_cursor(request.cursor, live_id) if request.cursor else None
        parts, principal = self._parts, acting(current_principal())
        room = parts.room
        session = await room.session(creator, live_id)
        hosts, settings = await room.admit_viewer(principal, session)
        user = principal.subject  # statements of reasons are addressed to `users/{user}`
        subscription = await parts.hub.join(live_id, user)
        joined = parts.clock()
        parts.signals.join(session.name, principal.subject, joined)
        try:
            first = room_pb2.StreamRoomResponse(
                hosts=[f"creators/{host}" for host in hosts.all],
                room_settings=render.room_settings(session.host, settings),
                pins=render.pins(subscription.room.pins if isinstance(subscription.room.pins, tuple) else ()))
            if after is None:
                after = max(0, await parts.hub_last_sequence(live_id) - room.policy.recent_events)
            start = after
            while True:
                stored = await parts.replay(live_id, after, REPLAY_PAGE)
                events = [await parts.opened(item) for item in stored]
                # A deletion of a message this replay never showed is nothing to this viewer.
                visible = [event for event in events if event.audience in (None, user)
                           and not (isinstance(event.body, ChatDeleted) and event.body.message_sequence > start)]
                last = stored[-1].event.sequence if stored else after
                first.events.extend(rendered for event in visible
                                    if (rendered := render.room_event(event, session.host)) is not None)
                first.cursor = encode_cursor(live_id, last)
                after = last
                if len(stored) < REPLAY_PAGE:
                    break
                yield first
                first = room_pb2.StreamRoomResponse()
            subscription.delivered = after
            yield first
            if session.state_at(parts.clock()) is LiveState.ENDED:
                return
            while True:
                try:
                    batch = await subscription.next_batch()
                except StreamClosed as closed:
                    raise Unavailable("the stream fell behind: resume from the last cursor",
                                      reason=closed.reason) from closed
                if batch.events or batch.sampled_out:
                    yield self._rendered(batch, live_id, session.host)
                if batch.closes is not None:
                    if batch.closes.reason == "LIVE_ENDED":
                        return
                    statement = batch.closes.statement
                    raise PermissionDenied("you were banned from this creator's rooms", reason="VIEWER_BANNED",
                                           metadata=statement_metadata(statement.statement) if statement else {})
        finally:
            subscription.room.leave(subscription)
            left = parts.clock()
            parts.signals.view(session.name, principal.subject, left, view_time(joined, left))

    @staticmethod
    def _rendered(batch: Batch, live_id: str, host: str) -> room_pb2.StreamRoomResponse:
        """One gRPC message for the batch; a shared batch is rendered once for all its subscribers."""
        if isinstance(batch.rendered, room_pb2.StreamRoomResponse):
            return batch.rendered
        response = room_pb2.StreamRoomResponse(
            events=[rendered for event in batch.events if (rendered := render.room_event(event, host)) is not None],
            cursor=encode_cursor(live_id, batch.last_sequence), chat_messages_sampled_out=batch.sampled_out)
        if batch.shared:
            batch.rendered = response
        return response

    async def DeleteChatMessage(self, request: room_pb2.DeleteChatMessageRequest,
                                context: Call) -> room_pb2.DeleteChatMessageResponse:
        creator, live_id, message_id = _ids(CHAT_MESSAGE, request.name, field="name")
        message, statement = await self._parts.room.delete_chat(acting(current_principal()), creator, live_id,
                                                                message_id, request.reason)
        return room_pb2.DeleteChatMessageResponse(chat_message=render.chat_message(message),
                                                  statement_of_reasons=render.statement(statement))

    # Moderation

    async def MuteViewer(self, request: room_pb2.MuteViewerRequest, context: Call) -> room_pb2.MuteViewerResponse:
        creator, live_id = _ids(names.LIVE, request.live, field="live")
        (user,) = _ids(names.USER, request.user, field="user")
        until, statement = await self._parts.room.mute(acting(current_principal()), creator, live_id, user,
                                                       request.duration.ToTimedelta(), request.reason)
        response = room_pb2.MuteViewerResponse(statement_of_reasons=render.statement(statement))
        response.end_time.FromDatetime(until)
        return response

    async def BanViewer(self, request: room_pb2.BanViewerRequest, context: Call) -> room_pb2.BanViewerResponse:
        (creator,) = _ids(names.CREATOR, request.parent, field="parent")
        (user,) = _ids(names.USER, request.user, field="user")
        ban, statement = await self._parts.room.ban(acting(current_principal()), creator, user, request.reason)
        return room_pb2.BanViewerResponse(ban=render.ban(ban), statement_of_reasons=render.statement(statement))

    async def UnbanViewer(self, request: room_pb2.UnbanViewerRequest,
                          context: Call) -> room_pb2.UnbanViewerResponse:
        creator, user = _ids(BAN, request.name, field="name")
        ban = await self._parts.room.unban(acting(current_principal()), creator, user)
        return room_pb2.UnbanViewerResponse(ban=render.ban(ban))

    async def AppointModerator(self, request: room_pb2.AppointModeratorRequest,
                               context: Call) -> room_pb2.AppointModeratorResponse:
        (creator,) = _ids(names.CREATOR, request.parent, field="parent")
        (user,) = _ids(names.USER, request.user, field="user")
        moderator = await self._parts.room.appoint_moderator(acting(current_principal()), creator, user)
        return room_pb2.AppointModeratorResponse(moderator=render.moderator(moderator))

    async def RemoveModerator(self, request: room_pb2.RemoveModeratorRequest,
                              context: Call) -> room_pb2.RemoveModeratorResponse:
        creator, user = _ids(MODERATOR, request.name, field="name")
        moderator = await self._parts.room.remove_moderator(acting(current_principal()), creator, user)
        return room_pb2.RemoveModeratorResponse(moderator=render.moderator(moderator))

    async def UpdateKeywordFilter(self, request: room_pb2.UpdateKeywordFilterRequest,
                                  context: Call) -> room_pb2.UpdateKeywordFilterResponse:
        name = request.keyword_filter.name
        (creator,) = _ids(KEYWORD_FILTER, name, field="keyword_filter.name")
        keywords = await self._parts.room.update_keywords(acting(current_principal()), creator,
                                                          list(request.keyword_filter.keywords))
        return room_pb2.UpdateKeywordFilterResponse(keyword_filter=room_pb2.KeywordFilter(name=name,
                                                                                          keywords=keywords))

    async def GetKeywordFilter(self, request: room_pb2.GetKeywordFilterRequest,
                               context: Call) -> room_pb2.GetKeywordFilterResponse:
        (creator,) = _ids(KEYWORD_FILTER, request.name, field="name")
        keywords = await self._parts.room.keywords(acting(current_principal()), creator)
        return room_pb2.GetKeywordFilterResponse(keyword_filter=room_pb2.KeywordFilter(name=request.name,
                                                                                       keywords=keywords))

    async def UpdateRoomSettings(self, request: room_pb2.UpdateRoomSettingsRequest,
                                 context: Call) -> room_pb2.UpdateRoomSettingsResponse:
        settings = request.room_settings
        creator, live_id = _ids(ROOM_SETTINGS, settings.name, field="room_settings.name")
        stored = await self._parts.room.update_settings(acting(current_principal()), creator, live_id,
                                                        settings.slow_mode.ToTimedelta(), settings.age_restricted)
        return room_pb2.UpdateRoomSettingsResponse(room_settings=render.room_settings(creator, stored))

    # Q&A

    async def SubmitQuestion(self, request: room_pb2.SubmitQuestionRequest,
                             context: Call) -> room_pb2.SubmitQuestionResponse:
        creator, live_id = _ids(names.LIVE, request.live, field="live")
        question = await self._parts.room.submit_question(acting(current_principal()), creator, live_id,
                                                          request.request_id, request.text)
        return room_pb2.SubmitQuestionResponse(question=render.question(question))

    async def UpvoteQuestion(self, request: room_pb2.UpvoteQuestionRequest,
                             context: Call) -> room_pb2.UpvoteQuestionResponse:
        creator, live_id, question_id = _ids(QUESTION, request.name, field="name")
        question = await self._parts.room.upvote(acting(current_principal()), creator, live_id, question_id)
        return room_pb2.UpvoteQuestionResponse(question=render.question(question))

    async def UpdateQuestionState(self, request: room_pb2.UpdateQuestionStateRequest,
                                  context: Call) -> room_pb2.UpdateQuestionStateResponse:
        creator, live_id, question_id = _ids(QUESTION, request.name, field="name")
        question = await self._parts.room.update_question_state(
            acting(current_principal()), creator, live_id, question_id, render.QUESTION_STATES_IN[request.state],
            request.reason)
        return room_pb2.UpdateQuestionStateResponse(question=render.question(question))

    # Co-hosts

    async def InviteCoHost(self, request: room_pb2.InviteCoHostRequest,
                           context: Call) -> room_pb2.InviteCoHostResponse:
        creator, live_id = _ids(names.LIVE, request.live, field="live")
        (invitee,) = _ids(names.CREATOR, request.creator, field="creator")
        co_host = await self._parts.room.invite_co_host(acting(current_principal()), creator, live_id, invitee)
        return room_pb2.InviteCoHostResponse(co_host=render.co_host(co_host))

    async def AcceptCoHostInvitation(self, request: room_pb2.AcceptCoHostInvitationRequest,
                                     context: Call) -> room_pb2.AcceptCoHostInvitationResponse:
        creator, live_id, co_host_id = _ids(CO_HOST, request.name, field="name")
        co_host = await self._parts.room.accept_co_host(acting(current_principal()), creator, live_id, co_host_id)
        return room_pb2.AcceptCoHostInvitationResponse(co_host=render.co_host(co_host))

    async def EndCoHosting(self, request: room_pb2.EndCoHostingRequest,
                           context: Call) -> room_pb2.EndCoHostingResponse:
        creator, live_id, co_host_id = _ids(CO_HOST, request.name, field="name")
        co_host = await self._parts.room.end_co_host(acting(current_principal()), creator, live_id, co_host_id)
        return room_pb2.EndCoHostingResponse(co_host=render.co_host(co_host))
