"""The room store on both engines: its event log numbers a room without gaps by the schema
itself, and its writes keep one effect per vote and per keyword list."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from libs.storage.database import IntegrityError
from services.gifts.conftest import ON_BOTH_ENGINES, START
from services.gifts.model.room import ChatMessage, ChatPosted, Question, QuestionChanged, QuestionState
from services.gifts.store.room import RoomStore, RoomUnitOfWork, open_room_database

pytestmark = ON_BOTH_ENGINES


@pytest.fixture
async def store(tmp_path: Path, database_engine: str) -> AsyncIterator[RoomStore]:
    opened = RoomStore.of_service(tmp_path)
    assert opened.engine == database_engine
    yield opened
    opened.close()


def _chat(live_id: str, number: int) -> ChatPosted:
    return ChatPosted(ChatMessage(f"m{number}", live_id, "carol", "bob", f"hello {number}", START, number))


async def test_the_event_log_numbers_a_room_without_gaps(store: RoomStore, tmp_path: Path) -> None:
    def post(uow: RoomUnitOfWork) -> list[int]:
        return [uow.append(live, START, functools.partial(_chat, live)).sequence for live in ("a", "b", "a")]

    assert await store.run(post) == [1, 1, 2]

    by_hand = open_room_database(tmp_path)  # what any buggy code path could write
    try:
        for wrong in (2, 4):
            with pytest.raises(IntegrityError, match="without gaps"), by_hand.transaction() as tx:
                tx.execute("INSERT INTO room_event (live_id, sequence, kind, body, created_at_us) "
                           "VALUES ('a', ?, 'ChatPosted', '{}', 0)", (wrong,))
    finally:
        by_hand.close()
    assert store.last_sequence("a") == 2


async def test_a_vote_counts_once_and_keywords_are_read_back_per_creator(store: RoomStore) -> None:
    question = Question("q1", "a", "carol", "bob", "", QuestionState.OPEN, 0, START)

    def ask_and_vote(uow: RoomUnitOfWork) -> list[bool]:
        uow.insert_question(question, b"sealed", "r1")
        uow.append("a", START, lambda sequence: QuestionChanged(question))
        uow.put_keywords("carol", ("spam", "scam"))
        uow.put_keywords("dave", ("boo",))
        uow.put_keywords("carol", ("spam", "fraud"))
        return [uow.add_vote("q1", "vera"), uow.add_vote("q1", "vera"), uow.add_vote("q1", "walt")]

    assert await store.run(ask_and_vote) == [True, False, True]
    stored = store.read(lambda uow: uow.question("q1"))
    assert stored is not None and stored[0].upvotes == 2
    assert sorted(store.read(lambda uow: uow.keywords(("carol", "dave")))) == ["boo", "fraud", "spam"]
    (replayed,) = store.events_after("a", 0, 10)
    assert (replayed.author, replayed.sealed_text) == ("bob", b"sealed")  # the question's, joined on replay
    assert replayed.event.at == START
