"""LIVE rooms end to end: a real gifts server on a loopback port, real streams, real tokens."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from limelight.gifts.v1 import gifts_pb2, gifts_pb2_grpc, live_pb2, room_pb2, room_pb2_grpc, wallet_pb2
from limelight.privacy.v1 import subject_data_pb2, subject_data_pb2_grpc

from libs.auth.principal import Role
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.privacy.fields import EphemeralDataKeys, PersonalData
from services.gifts.conftest import ON_BOTH_ENGINES, MovableClock
from services.gifts.model.room import RoomPolicy
from services.gifts.server import GiftsService
from services.gifts.test_server import UNLIMITED, Gifts

FAST = dataclasses.replace(UNLIMITED, room=RoomPolicy(batch_interval=dt.timedelta(milliseconds=20)))
WAIT_S = 10.0


class Room(Gifts):
    """A running gifts service with the room's stubs and the steps of a room's story."""

    def room(self) -> room_pb2_grpc.RoomServiceAsyncStub:
        channel = grpc.aio.insecure_channel(self.running.target)
        self._channels.append(channel)
        return room_pb2_grpc.RoomServiceStub(channel)

    def as_user(self, user: str, *roles: Role, age: int = 30) -> tuple[tuple[str, str], ...]:
        return self.auth(f"users/{user}", *roles, age=age)

    async def say(self, live: str, user: str, text: str, *, request_id: str | None = None,
                  age: int = 30) -> room_pb2.ChatMessage:
        response = await self.room().SendChatMessage(
            room_pb2.SendChatMessageRequest(live=live, request_id=request_id or str(uuid.uuid4()), text=text),
            metadata=self.as_user(user, age=age))
        return response.chat_message


async def start_room(root: Path, config: Any = FAST, *, ledger_process: bool = False,
                     keys: EphemeralDataKeys | None = None) -> tuple[RunningService, GiftsService, MovableClock]:
    clock = MovableClock()
    services: list[GiftsService] = []

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        services.append(GiftsService(runtime, config=dataclasses.replace(config, ship_audit=False,
                                                                         ledger_in_process=not ledger_process),
                                     clock=clock, personal=PersonalData(keys or EphemeralDataKeys())))
        return services[0].definition()

    running = await start_service("gifts", build, port=0, data_root=root)
    return running, services[0], clock


@pytest.fixture
async def room(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Room]:
    if "database_engine" in request.fixturenames:
        request.getfixturevalue("database_engine")  # before the service opens its stores
    running, built, clock = await start_room(tmp_path)
    handle = Room(running, built, tmp_path, clock)
    yield handle
    await handle.close()
    await running.stop(grace=0)


@pytest.fixture(params=[False, True], ids=["in-process-ledger", "ledger-process"])
async def room_on_either_ledger(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Room]:
    """The room with the ledger in this process or in its own (the service's default)."""
    running, built, clock = await start_room(tmp_path, ledger_process=request.param)
    handle = Room(running, built, tmp_path, clock)
    yield handle
    await handle.close()
    await running.stop(grace=0)


class Viewer:
    """One viewer's open StreamRoom, read into `responses` by a task of its own."""

    def __init__(self, room: Room, live: str, user: str, *, cursor: str = "", age: int = 30) -> None:
        self.call = room.room().StreamRoom(room_pb2.StreamRoomRequest(live=live, cursor=cursor),
                                           metadata=room.as_user(user, age=age))
        self.responses: list[room_pb2.StreamRoomResponse] = []
        self.error: grpc.aio.AioRpcError | None = None
        self.ended = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for response in self.call:
                self.responses.append(response)
        except grpc.aio.AioRpcError as error:
            if error.code() is not grpc.StatusCode.CANCELLED:
                self.error = error
        finally:
            self.ended.set()

    @property
    def events(self) -> list[room_pb2.RoomEvent]:
        return [event for response in self.responses for event in response.events]

    @property
    def texts(self) -> list[str]:
        return [event.chat_message.text for event in self.events if event.HasField("chat_message")]

    @property
    def cursor(self) -> str:
        return self.responses[-1].cursor

    async def until(self, condition: Callable[[Viewer], bool]) -> None:
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while not condition(self):
            assert not self.ended.is_set() or condition(self), f"the stream ended: {self.error}"
            assert asyncio.get_running_loop().time() < deadline, f"timed out; have {self.texts}"
            await asyncio.sleep(0.01)

    async def close(self) -> None:
        self.call.cancel()
        await self.ended.wait()


def error_details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                                                          error_details_pb2.RetryInfo]:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    info, bad, retry = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest(), error_details_pb2.RetryInfo()
    for detail in status.details:
        for message in (info, bad, retry):
            if detail.Is(message.DESCRIPTOR):
                detail.Unpack(message)
    return info, bad, retry


async def refused(call: Any) -> tuple[grpc.StatusCode, str, error_details_pb2.ErrorInfo, error_details_pb2.BadRequest,
                                      error_details_pb2.RetryInfo]:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    info, bad, retry = error_details(caught.value)
    return caught.value.code(), info.reason, info, bad, retry


# Chat: order, resume, retries ---------------------------------------------------------------


@ON_BOTH_ENGINES
async def test_a_viewer_resuming_from_its_cursor_misses_nothing_and_repeats_nothing(room: Room) -> None:
    live = await room.go_live("carol")
    viewer = Viewer(room, live, "vera")
    await viewer.until(lambda v: len(v.responses) >= 1)
    for number in range(5):
        await room.say(live, "bob", f"message {number}")
    await viewer.until(lambda v: len(v.texts) == 5)
    cursor = viewer.cursor
    await viewer.close()
    for number in range(5, 12):
        await room.say(live, "bob", f"message {number}")
    resumed = Viewer(room, live, "vera", cursor=cursor)
    await resumed.until(lambda v: len(v.texts) >= 7)
    await room.say(live, "bob", "message 12")
    await resumed.until(lambda v: len(v.texts) >= 8)
    assert viewer.texts == [f"message {number}" for number in range(5)]
    assert resumed.texts == [f"message {number}" for number in range(5, 13)]
    sequences = [event.sequence for event in viewer.events + resumed.events]
    assert sequences == list(range(1, 14))
    await resumed.close()


@pytest.mark.parametrize("database_engine", ["postgres"], indirect=True)
async def test_a_viewer_on_one_replica_sees_the_chat_posted_through_another_in_order(
        tmp_path: Path, database_engine: str) -> None:
    """Two gifts replicas over one PostgreSQL and no Redis: the rooms share one event log, and
    each replica's streams take from it what any replica committed, numbered without gaps."""
    keys, replicas = EphemeralDataKeys(), list[tuple[Room, RunningService]]()
    try:
        for _ in range(2):  # one data directory and one data-key service, as replicas on one machine
            running, built, clock = await start_room(tmp_path, keys=keys)
            replicas.append((Room(running, built, tmp_path, clock), running))
        (first, _), (second, _) = replicas
        live = await first.go_live("carol")
        viewer = Viewer(second, live, "vera")
        await viewer.until(lambda v: len(v.responses) >= 1)
        for number in range(6):
            await (first if number % 2 == 0 else second).say(live, "bob", f"message {number}")
        await viewer.until(lambda v: len(v.texts) == 6)
        assert viewer.texts == [f"message {number}" for number in range(6)]
        assert [event.sequence for event in viewer.events] == list(range(1, 7))
        await viewer.close()
    finally:
        for handle, running in replicas:
            await handle.close()
            await running.stop(grace=0)


async def test_a_retried_message_is_posted_once_and_a_reused_request_id_is_refused(room: Room) -> None:
    live = await room.go_live("carol")
    request_id = str(uuid.uuid4())
    first = await room.say(live, "bob", "hello", request_id=request_id)
    again = await room.say(live, "bob", "hello", request_id=request_id)
    assert again.name == first.name and again.text == "hello"
    code, reason, *_ = await refused(room.say(live, "bob", "other text", request_id=request_id))
    assert (code, reason) == (grpc.StatusCode.ALREADY_EXISTS, "REQUEST_ID_REUSED")
    viewer = Viewer(room, live, "vera")
    await viewer.until(lambda v: len(v.responses) >= 1)
    assert viewer.texts == ["hello"]
    await viewer.close()


async def test_gifts_reach_the_room_stream_among_the_chat(room_on_either_ledger: Room) -> None:
    room = room_on_either_ledger
    live = await room.go_live("carol")
    await room.top_up("alice")
    viewer = Viewer(room, live, "vera")
    await viewer.until(lambda v: len(v.responses) >= 1)
    await room.say(live, "alice", "here comes a doughnut")
    await room.stubs().gifts.SendGift(room.gift_request(live), metadata=room.as_user("alice"))
    await viewer.until(lambda v: any(event.HasField("gift_transfer") for event in v.events))
    kinds = [event.WhichOneof("kind") for event in viewer.events]
    assert kinds == ["chat_message", "gift_transfer"]
    assert viewer.events[1].gift_transfer.sender == "users/alice"
    await viewer.close()


# Moderation ----------------------------------------------------------------------------------


@ON_BOTH_ENGINES
async def test_a_deleted_message_vanishes_from_every_stream_and_from_the_replay(room: Room) -> None:
    live = await room.go_live("carol")
    await room.room().AppointModerator(room_pb2.AppointModeratorRequest(parent="creators/carol", user="users/mo"),
                                       metadata=room.as_user("carol", Role.CREATOR))
    viewers = [Viewer(room, live, name) for name in ("vera", "walt", "bob")]
    for viewer in viewers:
        await viewer.until(lambda v: len(v.responses) >= 1)
    await room.say(live, "bob", "keep me")
    rude = await room.say(live, "bob", "you are all idiots")
    for viewer in viewers:
        await viewer.until(lambda v: len(v.texts) == 2)
    deleted = await room.room().DeleteChatMessage(
        room_pb2.DeleteChatMessageRequest(name=rude.name, reason="insulting other viewers"),
        metadata=room.as_user("mo"))
    assert deleted.chat_message.deleted and deleted.chat_message.text == ""
    assert deleted.statement_of_reasons.decision == "MESSAGE_REMOVED"
    assert deleted.statement_of_reasons.facts == "insulting other viewers"
    for viewer in viewers:
        await viewer.until(lambda v: any(event.chat_message_deleted == rude.name for event in v.events))
    author = viewers[2]
    await author.until(lambda v: any(event.HasField("statement_of_reasons") for event in v.events))
    assert not any(event.HasField("statement_of_reasons") for event in viewers[0].events)
    replay = Viewer(room, live, "zed")
    await replay.until(lambda v: len(v.responses) >= 1)
    assert replay.texts == ["keep me"]
    assert not any(event.chat_message_deleted for event in replay.events)
    for viewer in [*viewers, replay]:
        await viewer.close()
    pending = [traced.event for traced in room.service.room_parts.store.outbox.pending(100)]
    assert [(event.action, event.outcome.value) for event in pending] == [("gifts.AppointModerator", "succeeded"),
                                                                           ("gifts.DeleteChatMessage", "succeeded")]


async def test_a_banned_viewers_stream_closes_and_their_next_message_is_refused(room: Room) -> None:
    live = await room.go_live("carol")
    troll = Viewer(room, live, "troll")
    other = Viewer(room, live, "vera")
    await troll.until(lambda v: len(v.responses) >= 1)
    await other.until(lambda v: len(v.responses) >= 1)
    await room.say(live, "troll", "first")
    banned = await room.room().BanViewer(
        room_pb2.BanViewerRequest(parent="creators/carol", user="users/troll", reason="repeated harassment"),
        metadata=room.as_user("carol", Role.CREATOR))
    assert banned.ban.name == "creators/carol/bans/troll"
    assert banned.statement_of_reasons.decision == "BANNED"
    await asyncio.wait_for(troll.ended.wait(), WAIT_S)
    assert troll.error is not None and troll.error.code() is grpc.StatusCode.PERMISSION_DENIED
    info, _, _ = error_details(troll.error)
    assert info.reason == "VIEWER_BANNED" and info.metadata["facts"] == "repeated harassment"
    assert troll.events[-1].statement_of_reasons.decision == "BANNED"
    code, reason, *_ = await refused(room.say(live, "troll", "second"))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "VIEWER_BANNED")
    again = Viewer(room, live, "troll")
    await asyncio.wait_for(again.ended.wait(), WAIT_S)
    assert again.error is not None and error_details(again.error)[0].reason == "VIEWER_BANNED"
    await other.until(lambda v: len(v.texts) == 1)
    assert not other.ended.is_set()
    await other.close()
    await room.room().UnbanViewer(room_pb2.UnbanViewerRequest(name="creators/carol/bans/troll"),
                                  metadata=room.as_user("carol", Role.CREATOR))
    assert (await room.say(live, "troll", "sorry")).text == "sorry"


OBFUSCATED_SPAM = ["SPAM", "sp4m", "s.p.a.m", "spaaaam", "s p a m", "$pam", "śpàm"]


@ON_BOTH_ENGINES
async def test_a_filtered_word_is_refused_in_its_obfuscated_spellings_and_never_reaches_others(room: Room) -> None:
    live = await room.go_live("carol")
    await room.room().UpdateKeywordFilter(room_pb2.UpdateKeywordFilterRequest(keyword_filter=room_pb2.KeywordFilter(
        name="creators/carol/keywordFilter", keywords=["Scheiße", "müll"])), metadata=room.as_user("carol"))
    viewer = Viewer(room, live, "vera")
    await viewer.until(lambda v: len(v.responses) >= 1)
    for text in [*(f"buy {word} now" for word in OBFUSCATED_SPAM), "SCHEISSE", "sch3isse", "das ist muell",
                 "mülll"]:
        code, reason, info, bad, _ = await refused(room.say(live, "bob", text))
        assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MESSAGE_FILTERED"), text
        assert [violation.field for violation in bad.field_violations] == ["text"]
        assert info.metadata["decision"] == "MESSAGE_REFUSED" and info.metadata["automated"] == "true"
        assert "DSA Art. 20" in info.metadata["redress"]
    await room.say(live, "bob", "this pam is fine")
    await viewer.until(lambda v: len(v.texts) == 1)
    assert viewer.texts == ["this pam is fine"]
    await viewer.close()
    refusals = [traced.event for traced in room.service.room_parts.store.outbox.pending(100)
                if traced.event.action == "gifts.SendChatMessage"]
    assert len(refusals) == 11 and {event.reason for event in refusals} == {"MESSAGE_FILTERED"}


async def test_slow_mode_refuses_with_the_delay_and_mutes_end_by_the_clock(room: Room) -> None:
    live = await room.go_live("carol")
    await room.room().UpdateRoomSettings(room_pb2.UpdateRoomSettingsRequest(room_settings=room_pb2.RoomSettings(
        name=f"{live}/roomSettings", slow_mode=duration_pb2.Duration(seconds=30))), metadata=room.as_user("carol"))
    await room.say(live, "bob", "one")
    room.clock.advance(dt.timedelta(seconds=10))
    code, reason, _, _, retry = await refused(room.say(live, "bob", "two"))
    assert (code, reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "SLOW_MODE")
    assert retry.retry_delay.ToTimedelta() == dt.timedelta(seconds=20)
    assert (await room.say(live, "carol", "hosts are exempt")).text == "hosts are exempt"
    room.clock.advance(dt.timedelta(seconds=20))
    await room.say(live, "bob", "two")
    muted = await room.room().MuteViewer(room_pb2.MuteViewerRequest(
        live=live, user="users/bob", duration=duration_pb2.Duration(seconds=120), reason="flooding"),
        metadata=room.as_user("carol"))
    assert muted.statement_of_reasons.decision == "MUTED" and muted.statement_of_reasons.HasField("end_time")
    room.clock.advance(dt.timedelta(seconds=60))
    code, reason, info, _, _ = await refused(room.say(live, "bob", "three"))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "VIEWER_MUTED") and "until" in info.metadata
    room.clock.advance(dt.timedelta(seconds=61))
    assert (await room.say(live, "bob", "three")).text == "three"


async def test_minors_watch_and_chat_but_cannot_gift_and_age_restricted_rooms_refuse_them(room: Room) -> None:
    live = await room.go_live("carol")
    teen = Viewer(room, live, "teen", age=16)
    await teen.until(lambda v: len(v.responses) >= 1)
    await room.say(live, "teen", "hi from a minor", age=16)
    code, reason, *_ = await refused(room.stubs().gifts.SendGift(room.gift_request(live),
                                                                 metadata=room.as_user("teen", age=16)))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "SENDER_UNDER_18")
    await teen.close()
    await room.room().UpdateRoomSettings(room_pb2.UpdateRoomSettingsRequest(room_settings=room_pb2.RoomSettings(
        name=f"{live}/roomSettings", age_restricted=True)), metadata=room.as_user("carol"))
    refused_viewer = Viewer(room, live, "teen", age=16)
    await asyncio.wait_for(refused_viewer.ended.wait(), WAIT_S)
    assert refused_viewer.error is not None
    assert error_details(refused_viewer.error)[0].reason == "ROOM_AGE_RESTRICTED"
    code, reason, *_ = await refused(room.say(live, "teen", "let me in", age=16))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "ROOM_AGE_RESTRICTED")


async def test_every_moderation_refusal_says_why(room: Room) -> None:
    live = await room.go_live("carol")
    message = await room.say(live, "bob", "hello")
    stub = room.room()
    cases = [
        (stub.DeleteChatMessage(room_pb2.DeleteChatMessageRequest(name=message.name, reason="no"),
                                metadata=room.as_user("vera")), grpc.StatusCode.PERMISSION_DENIED,
         "NOT_ROOM_MODERATOR"),
        (stub.MuteViewer(room_pb2.MuteViewerRequest(live=live, user="users/carol", reason="no",
                                                    duration=duration_pb2.Duration(seconds=60)),
                         metadata=room.as_user("carol")), grpc.StatusCode.FAILED_PRECONDITION,
         "CANNOT_MODERATE_MODERATOR"),
        (stub.BanViewer(room_pb2.BanViewerRequest(parent="creators/carol", user="users/bob", reason="no"),
                        metadata=room.as_user("vera")), grpc.StatusCode.PERMISSION_DENIED, "NOT_ROOM_MODERATOR"),
        (stub.AppointModerator(room_pb2.AppointModeratorRequest(parent="creators/carol", user="users/vera"),
                               metadata=room.as_user("vera")), grpc.StatusCode.PERMISSION_DENIED, "NOT_CREATOR"),
        (stub.RemoveModerator(room_pb2.RemoveModeratorRequest(name="creators/carol/moderators/vera"),
                              metadata=room.as_user("carol")), grpc.StatusCode.NOT_FOUND, "MODERATOR_NOT_FOUND"),
        (stub.UnbanViewer(room_pb2.UnbanViewerRequest(name="creators/carol/bans/vera"),
                          metadata=room.as_user("carol")), grpc.StatusCode.NOT_FOUND, "BAN_NOT_FOUND"),
        (stub.UpdateKeywordFilter(room_pb2.UpdateKeywordFilterRequest(keyword_filter=room_pb2.KeywordFilter(
            name="creators/carol/keywordFilter", keywords=["spam"])), metadata=room.as_user("vera")),
         grpc.StatusCode.PERMISSION_DENIED, "NOT_CREATOR"),
        (stub.GetKeywordFilter(room_pb2.GetKeywordFilterRequest(name="creators/carol/keywordFilter"),
                               metadata=room.as_user("vera")), grpc.StatusCode.PERMISSION_DENIED,
         "NOT_ROOM_MODERATOR"),
        (stub.UpdateRoomSettings(room_pb2.UpdateRoomSettingsRequest(room_settings=room_pb2.RoomSettings(
            name=f"{live}/roomSettings")), metadata=room.as_user("vera")), grpc.StatusCode.PERMISSION_DENIED,
         "NOT_LIVE_HOST"),
        (stub.DeleteChatMessage(room_pb2.DeleteChatMessageRequest(name=f"{live}/chatMessages/nope", reason="x"),
                                metadata=room.as_user("carol")), grpc.StatusCode.NOT_FOUND, "CHAT_MESSAGE_NOT_FOUND"),
        (stub.SendChatMessage(room_pb2.SendChatMessageRequest(live="creators/carol/lives/nope",
                                                              request_id=str(uuid.uuid4()), text="hi"),
                              metadata=room.as_user("bob")), grpc.StatusCode.NOT_FOUND, "LIVE_NOT_FOUND"),
    ]
    for call, code, reason in cases:
        assert (await refused(call))[:2] == (code, reason)
    await room.stubs().live.EndLive(live_pb2.EndLiveRequest(name=live), metadata=room.as_user("carol", Role.CREATOR))
    assert (await refused(room.say(live, "bob", "late")))[:2] == (grpc.StatusCode.FAILED_PRECONDITION, "LIVE_ENDED")


MALFORMED: list[tuple[str, Callable[[str], Any], str]] = [
    ("SendChatMessage", lambda live: room_pb2.SendChatMessageRequest(live="lives/x", request_id=str(uuid.uuid4()),
                                                                     text="hi"), "live"),
    ("SendChatMessage", lambda live: room_pb2.SendChatMessageRequest(live=live, request_id="nope", text="hi"),
     "request_id"),
    ("SendChatMessage", lambda live: room_pb2.SendChatMessageRequest(live=live, request_id=str(uuid.uuid4()),
                                                                     text=""), "text"),
    ("SendChatMessage", lambda live: room_pb2.SendChatMessageRequest(live=live, request_id=str(uuid.uuid4()),
                                                                     text="x" * 301), "text"),
    ("DeleteChatMessage", lambda live: room_pb2.DeleteChatMessageRequest(name=live, reason="x"), "name"),
    ("DeleteChatMessage", lambda live: room_pb2.DeleteChatMessageRequest(name=f"{live}/chatMessages/m", reason=""),
     "reason"),
    ("MuteViewer", lambda live: room_pb2.MuteViewerRequest(live=live, user="bob", reason="x",
                                                           duration=duration_pb2.Duration(seconds=60)), "user"),
    ("MuteViewer", lambda live: room_pb2.MuteViewerRequest(live=live, user="users/bob", reason="x",
                                                           duration=duration_pb2.Duration(seconds=1)), "duration"),
    ("MuteViewer", lambda live: room_pb2.MuteViewerRequest(live=live, user="users/bob", reason="x"), "duration"),
    ("BanViewer", lambda live: room_pb2.BanViewerRequest(parent="creators/", user="users/bob", reason="x"), "parent"),
    ("BanViewer", lambda live: room_pb2.BanViewerRequest(parent="creators/carol", user="users/bob", reason=""),
     "reason"),
    ("UnbanViewer", lambda live: room_pb2.UnbanViewerRequest(name="creators/carol/bans"), "name"),
    ("AppointModerator", lambda live: room_pb2.AppointModeratorRequest(parent="creators/carol", user="users/carol"),
     "user"),
    ("RemoveModerator", lambda live: room_pb2.RemoveModeratorRequest(name="creators/carol"), "name"),
    ("UpdateKeywordFilter", lambda live: room_pb2.UpdateKeywordFilterRequest(), "keyword_filter"),
    ("UpdateKeywordFilter", lambda live: room_pb2.UpdateKeywordFilterRequest(keyword_filter=room_pb2.KeywordFilter(
        name="creators/carol/keywordFilter", keywords=["x"])), "keyword_filter.keywords[0]"),
    ("UpdateKeywordFilter", lambda live: room_pb2.UpdateKeywordFilterRequest(keyword_filter=room_pb2.KeywordFilter(
        name="creators/carol/keywordFilter", keywords=["!!"])), "keyword_filter.keywords[0]"),
    ("UpdateKeywordFilter", lambda live: room_pb2.UpdateKeywordFilterRequest(keyword_filter=room_pb2.KeywordFilter(
        name="creators/carol", keywords=["spam"])), "keyword_filter.name"),
    ("GetKeywordFilter", lambda live: room_pb2.GetKeywordFilterRequest(name="carol"), "name"),
    ("UpdateRoomSettings", lambda live: room_pb2.UpdateRoomSettingsRequest(room_settings=room_pb2.RoomSettings(
        name=f"{live}/roomSettings", slow_mode=duration_pb2.Duration(seconds=601))), "room_settings.slow_mode"),
    ("UpdateRoomSettings", lambda live: room_pb2.UpdateRoomSettingsRequest(room_settings=room_pb2.RoomSettings(
        name=live)), "room_settings.name"),
    ("SubmitQuestion", lambda live: room_pb2.SubmitQuestionRequest(live=live, request_id=str(uuid.uuid4()), text=""),
     "text"),
    ("UpvoteQuestion", lambda live: room_pb2.UpvoteQuestionRequest(name=f"{live}/questions"), "name"),
    ("UpdateQuestionState", lambda live: room_pb2.UpdateQuestionStateRequest(
        name=f"{live}/questions/q", state=room_pb2.QUESTION_STATE_OPEN), "state"),
    ("UpdateQuestionState", lambda live: room_pb2.UpdateQuestionStateRequest(
        name=f"{live}/questions/q", state=room_pb2.QUESTION_STATE_ANSWERED, reason="x" * 501), "reason"),
    ("InviteCoHost", lambda live: room_pb2.InviteCoHostRequest(live=live, creator="users/dana"), "creator"),
    ("AcceptCoHostInvitation", lambda live: room_pb2.AcceptCoHostInvitationRequest(name=f"{live}/coHosts"), "name"),
    ("EndCoHosting", lambda live: room_pb2.EndCoHostingRequest(name=live), "name"),
    ("StreamRoom", lambda live: room_pb2.StreamRoomRequest(live="creators/carol"), "live"),
    ("StreamRoom", lambda live: room_pb2.StreamRoomRequest(live=live, cursor="not-a-cursor"), "cursor"),
]


async def test_every_malformed_input_is_invalid_argument_naming_the_field(room: Room) -> None:
    live = await room.go_live("carol")
    stub = room.room()
    for method, build, field in MALFORMED:
        request = build(live)
        if method == "StreamRoom":
            viewer = Viewer(room, request.live, "carol", cursor=request.cursor)
            await asyncio.wait_for(viewer.ended.wait(), WAIT_S)
            assert viewer.error is not None, (method, field)
            code, bad = viewer.error.code(), error_details(viewer.error)[1]
        else:
            code, _, _, bad, _ = await refused(getattr(stub, method)(request, metadata=room.as_user("carol")))
        assert code is grpc.StatusCode.INVALID_ARGUMENT, (method, field)
        assert [violation.field for violation in bad.field_violations] == [field], (method, field)
    code, _, _, bad, _ = await refused(room.stubs().gifts.SendGift(
        gifts_pb2.SendGiftRequest(request_id=str(uuid.uuid4()), live=live, gift="gifts/doughnut", count=1,
                                  recipient="users/carol"), metadata=room.as_user("alice")))
    assert code is grpc.StatusCode.INVALID_ARGUMENT and bad.field_violations[0].field == "recipient"


# Q&A -----------------------------------------------------------------------------------------


@ON_BOTH_ENGINES
async def test_the_q_and_a_lifecycle_reaches_the_stream(room: Room) -> None:
    live = await room.go_live("carol")
    stub = room.room()
    viewer = Viewer(room, live, "vera")
    await viewer.until(lambda v: len(v.responses) >= 1)
    request_id = str(uuid.uuid4())
    asked = (await stub.SubmitQuestion(room_pb2.SubmitQuestionRequest(live=live, request_id=request_id,
                                                                      text="What camera do you use?"),
                                       metadata=room.as_user("bob"))).question
    retried = (await stub.SubmitQuestion(room_pb2.SubmitQuestionRequest(live=live, request_id=request_id,
                                                                        text="What camera do you use?"),
                                         metadata=room.as_user("bob"))).question
    assert retried.name == asked.name and asked.state == room_pb2.QUESTION_STATE_OPEN
    code, reason, *_ = await refused(stub.UpvoteQuestion(room_pb2.UpvoteQuestionRequest(name=asked.name),
                                                         metadata=room.as_user("bob")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "OWN_QUESTION")
    for voter in ("vera", "walt", "vera"):
        upvoted = (await stub.UpvoteQuestion(room_pb2.UpvoteQuestionRequest(name=asked.name),
                                             metadata=room.as_user(voter))).question
    assert upvoted.upvote_count == 2
    code, reason, *_ = await refused(stub.UpdateQuestionState(room_pb2.UpdateQuestionStateRequest(
        name=asked.name, state=room_pb2.QUESTION_STATE_ANSWERING), metadata=room.as_user("vera")))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ROOM_MODERATOR")
    for state in (room_pb2.QUESTION_STATE_ANSWERING, room_pb2.QUESTION_STATE_ANSWERED):
        moved = (await stub.UpdateQuestionState(room_pb2.UpdateQuestionStateRequest(name=asked.name, state=state),
                                                metadata=room.as_user("carol"))).question
        assert moved.state == state and moved.text == "What camera do you use?"
    code, reason, *_ = await refused(stub.UpdateQuestionState(room_pb2.UpdateQuestionStateRequest(
        name=asked.name, state=room_pb2.QUESTION_STATE_ANSWERING), metadata=room.as_user("carol")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "QUESTION_STATE_CHANGE")
    code, reason, *_ = await refused(stub.SubmitQuestion(room_pb2.SubmitQuestionRequest(
        live=live, request_id=str(uuid.uuid4()), text="is this a sc4m?"), metadata=room.as_user("walt")))
    assert (code, reason) == (grpc.StatusCode.INVALID_ARGUMENT, "MESSAGE_FILTERED")
    rude = (await stub.SubmitQuestion(room_pb2.SubmitQuestionRequest(live=live, request_id=str(uuid.uuid4()),
                                                                     text="why so boring"),
                                      metadata=room.as_user("walt"))).question
    dismissed = (await stub.UpdateQuestionState(room_pb2.UpdateQuestionStateRequest(
        name=rude.name, state=room_pb2.QUESTION_STATE_DISMISSED, reason="off topic"),
        metadata=room.as_user("carol"))).question
    assert dismissed.text == ""
    await viewer.until(lambda v: sum(event.HasField("question") for event in v.events) == 7)
    states = [(event.question.upvote_count, event.question.state) for event in viewer.events
              if event.HasField("question") and event.question.name == asked.name]
    assert states == [(0, 1), (1, 1), (2, 1), (2, 2), (2, 3)]
    assert viewer.events[-1].question.text == ""  # the dismissed question, without its text
    await viewer.close()


# Co-hosts ------------------------------------------------------------------------------------


async def test_co_host_invite_accept_gift_split_and_end(room_on_either_ledger: Room) -> None:
    room = room_on_either_ledger
    live = await room.go_live("carol")
    stub, auth_carol = room.room(), room.as_user("carol", Role.CREATOR)
    await room.admit("newbie", follower_count=10)
    code, reason, *_ = await refused(stub.InviteCoHost(room_pb2.InviteCoHostRequest(live=live,
                                                                                    creator="creators/newbie"),
                                                       metadata=auth_carol))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "TOO_FEW_FOLLOWERS")
    await room.admit("dana", follower_count=5_000, identity_verified=True)
    invited = (await stub.InviteCoHost(room_pb2.InviteCoHostRequest(live=live, creator="creators/dana"),
                                       metadata=auth_carol)).co_host
    assert invited.state == room_pb2.CO_HOST_STATE_INVITED and invited.name == f"{live}/coHosts/dana"
    code, reason, *_ = await refused(stub.AcceptCoHostInvitation(
        room_pb2.AcceptCoHostInvitationRequest(name=invited.name), metadata=room.as_user("vera")))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_INVITED_CO_HOST")
    await room.top_up("alice")
    code, reason, *_ = await refused(room.stubs().gifts.SendGift(
        dataclasses_replace_recipient(room.gift_request(live), "creators/dana"), metadata=room.as_user("alice")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_HOST")
    viewer = Viewer(room, live, "vera")
    await viewer.until(lambda v: len(v.responses) >= 1)
    accepted = (await stub.AcceptCoHostInvitation(room_pb2.AcceptCoHostInvitationRequest(name=invited.name),
                                                  metadata=room.as_user("dana", Role.CREATOR))).co_host
    assert accepted.state == room_pb2.CO_HOST_STATE_ACTIVE
    await viewer.until(lambda v: any(event.HasField("hosts") for event in v.events))
    assert list(next(e for e in viewer.events if e.HasField("hosts")).hosts.hosts) == ["creators/carol",
                                                                                       "creators/dana"]
    gifts: gifts_pb2_grpc.GiftServiceAsyncStub = room.stubs().gifts
    to_dana = await gifts.SendGift(dataclasses_replace_recipient(room.gift_request(live), "creators/dana"),
                                   metadata=room.as_user("alice"))
    to_carol = await gifts.SendGift(room.gift_request(live), metadata=room.as_user("alice"))
    assert to_dana.gift_transfer.diamonds_credited == to_carol.gift_transfer.diamonds_credited > 0
    assert await diamonds_on_hold(room, "dana") == to_dana.gift_transfer.diamonds_credited
    assert await diamonds_on_hold(room, "carol") == to_carol.gift_transfer.diamonds_credited
    await viewer.until(lambda v: sum(event.HasField("gift_transfer") for event in v.events) == 2)
    # Both hosts' moderators apply: dana's moderator deletes a message in carol's session.
    await stub.AppointModerator(room_pb2.AppointModeratorRequest(parent="creators/dana", user="users/dmod"),
                                metadata=room.as_user("dana"))
    message = await room.say(live, "bob", "hello hosts")
    await stub.DeleteChatMessage(room_pb2.DeleteChatMessageRequest(name=message.name, reason="test"),
                                 metadata=room.as_user("dmod"))
    ended = (await stub.EndCoHosting(room_pb2.EndCoHostingRequest(name=invited.name),
                                     metadata=room.as_user("dana"))).co_host
    assert ended.state == room_pb2.CO_HOST_STATE_ENDED and ended.HasField("end_time")
    code, reason, *_ = await refused(gifts.SendGift(
        dataclasses_replace_recipient(room.gift_request(live), "creators/dana"), metadata=room.as_user("alice")))
    assert (code, reason) == (grpc.StatusCode.FAILED_PRECONDITION, "NOT_A_HOST")
    code, reason, *_ = await refused(stub.DeleteChatMessage(room_pb2.DeleteChatMessageRequest(
        name=(await room.say(live, "bob", "again")).name, reason="test"), metadata=room.as_user("dmod")))
    assert (code, reason) == (grpc.StatusCode.PERMISSION_DENIED, "NOT_ROOM_MODERATOR")
    await viewer.until(lambda v: sum(event.HasField("hosts") for event in v.events) == 2)
    await viewer.close()


def dataclasses_replace_recipient(request: gifts_pb2.SendGiftRequest, recipient: str) -> gifts_pb2.SendGiftRequest:
    request.recipient = recipient
    return request


async def diamonds_on_hold(room: Room, user: str) -> int:
    response = await room.stubs().wallet.GetWallet(wallet_pb2.GetWalletRequest(name=f"users/{user}/wallet"),
                                                   metadata=room.as_user(user))
    return int(response.wallet.diamonds_on_hold)


async def test_a_session_ending_ends_its_streams(room: Room) -> None:
    live = await room.go_live("carol")
    viewer = Viewer(room, live, "vera")
    await viewer.until(lambda v: len(v.responses) >= 1)
    await room.stubs().live.EndLive(live_pb2.EndLiveRequest(name=live), metadata=room.as_user("carol", Role.CREATOR))
    await asyncio.wait_for(viewer.ended.wait(), WAIT_S)
    assert viewer.error is None


@ON_BOTH_ENGINES
async def test_chat_and_questions_are_in_the_authors_export_and_gone_after_erasure(room: Room) -> None:
    live = await room.go_live("carol")
    await room.say(live, "bob", "hello from bob")
    await room.room().SubmitQuestion(room_pb2.SubmitQuestionRequest(live=live, request_id=str(uuid.uuid4()),
                                                                    text="bob asks"), metadata=room.as_user("bob"))
    channel = grpc.aio.insecure_channel(room.running.target)
    stub = subject_data_pb2_grpc.SubjectDataServiceStub(channel)
    compliance = room.auth("services/compliance", Role.SERVICE)
    exported = await stub.ExportSubjectData(subject_data_pb2.ExportSubjectDataRequest(subject="users/bob"),
                                            metadata=compliance)
    sections = json.loads(exported.export.json)
    assert [item["text"] for item in sections["live_chat_messages"]] == ["hello from bob"]
    assert [item["text"] for item in sections["live_questions"]] == ["bob asks"]
    erased = await stub.EraseSubjectData(subject_data_pb2.EraseSubjectDataRequest(subject="users/bob"),
                                         metadata=compliance)
    assert "2 texts erased" in erased.erasure.summary
    sections = json.loads((await stub.ExportSubjectData(subject_data_pb2.ExportSubjectDataRequest(
        subject="users/bob"), metadata=compliance)).export.json)
    assert [item["text"] for item in sections["live_chat_messages"]] == [""]
    viewer = Viewer(room, live, "vera")
    await viewer.until(lambda v: len(v.responses) >= 1)
    assert viewer.texts == [""]
    await viewer.close()
    await channel.close()
