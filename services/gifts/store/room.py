"""The room store: chat, Q&A, moderation and co-hosts of LIVE rooms, in a database of their own.

Why not the ledger's database: a busy room writes far more often than money moves, and chat
must never queue behind the ledger's fsyncs (nor cross into the ledger process). The room
keeps its own SQLite file (`<data>/gifts/room.db`, WAL), or its own PostgreSQL schema
(`gifts_room`), with its own group committer in the service process, and its own audit
outbox, so every moderation action and its audit event commit in one transaction.

The event log (`room_event`) numbers each room's events 1, 2, 3, ... without gaps (a trigger
refuses anything else), so a cursor is a number and a replay after it misses nothing and
repeats nothing. A room's next number is read inside the write transaction, which holds the
store's writer lock across replicas, so two replicas over one PostgreSQL never hand out the same
number. Chat and question texts are sealed per author (`libs.privacy`) in their own
tables; the log holds them without the text, and a deletion erases the sealed text for good.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from libs.audit.outbox import DatabaseAuditOutbox, TracedEvent, outbox_migration, write_event
from libs.errors import DomainError
from libs.storage.committer import GroupCommitter
from libs.storage.database import Database, Migration, Row, Transaction, open_database
from libs.storage.paths import data_dir
from libs.timestamps import epoch_us, from_epoch_us
from services.gifts.model.room import (
    Ban,
    ChatMessage,
    CoHost,
    CoHostState,
    Moderator,
    Question,
    QuestionChanged,
    QuestionState,
    RoomEvent,
    RoomSettings,
)
from services.gifts.store.room_events import body_from_json, body_to_json, without_text

R = TypeVar("R")

_SCHEMA_V1 = """
CREATE TABLE room_event (
    live_id TEXT NOT NULL,
    sequence INTEGER NOT NULL CHECK (sequence > 0),
    kind TEXT NOT NULL,
    body TEXT NOT NULL,                -- the event without personal text (store/room_events.py)
    created_at_us INTEGER NOT NULL,
    message_id TEXT,                   -- the chat message a ChatPosted event carries
    feed_sequence INTEGER,             -- the ledger feed's number of a GiftSent event
    PRIMARY KEY (live_id, sequence)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX room_event_gift ON room_event (live_id, feed_sequence) WHERE feed_sequence IS NOT NULL;
CREATE TRIGGER room_event_numbers_without_gaps BEFORE INSERT ON room_event
    WHEN NEW.sequence <> 1 + COALESCE((SELECT MAX(sequence) FROM room_event WHERE live_id = NEW.live_id), 0)
    BEGIN SELECT RAISE(ABORT, 'room_event numbers a room without gaps'); END;

CREATE TABLE chat_message (
    message_id TEXT PRIMARY KEY,
    live_id TEXT NOT NULL,
    host TEXT NOT NULL,
    author TEXT NOT NULL,
    request_id TEXT NOT NULL,
    text_sealed BLOB,                  -- sealed under the author's key; NULL once deleted
    sent_at_us INTEGER NOT NULL,
    sequence INTEGER NOT NULL,
    deleted_at_us INTEGER,
    UNIQUE (author, request_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX chat_by_author ON chat_message (author, live_id, sent_at_us);

CREATE TABLE question (
    question_id TEXT PRIMARY KEY,
    live_id TEXT NOT NULL,
    host TEXT NOT NULL,
    author TEXT NOT NULL,
    request_id TEXT NOT NULL,
    text_sealed BLOB,                  -- sealed under the author's key; NULL once dismissed
    state TEXT NOT NULL CHECK (state IN ('OPEN', 'ANSWERING', 'ANSWERED', 'DISMISSED')),
    upvotes INTEGER NOT NULL DEFAULT 0 CHECK (upvotes >= 0),
    submitted_at_us INTEGER NOT NULL,
    UNIQUE (author, request_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX question_by_author ON question (author, live_id, submitted_at_us);

CREATE TABLE question_vote (
    question_id TEXT NOT NULL REFERENCES question (question_id),
    voter TEXT NOT NULL,
    PRIMARY KEY (question_id, voter)
) STRICT, WITHOUT ROWID;

CREATE TABLE moderator (
    creator TEXT NOT NULL,
    user_id TEXT NOT NULL,
    appointed_at_us INTEGER NOT NULL,
    PRIMARY KEY (creator, user_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE ban (
    creator TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    banned_by TEXT NOT NULL,
    banned_at_us INTEGER NOT NULL,
    PRIMARY KEY (creator, user_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE mute (
    live_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    until_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    muted_by TEXT NOT NULL,
    PRIMARY KEY (live_id, user_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE keyword_filter (
    creator TEXT PRIMARY KEY,
    keywords TEXT NOT NULL             -- JSON array
) STRICT, WITHOUT ROWID;

CREATE TABLE room_settings (
    live_id TEXT PRIMARY KEY,
    slow_mode_us INTEGER NOT NULL CHECK (slow_mode_us >= 0),
    age_restricted INTEGER NOT NULL CHECK (age_restricted IN (0, 1))
) STRICT, WITHOUT ROWID;

CREATE TABLE co_host (
    live_id TEXT NOT NULL,
    host TEXT NOT NULL,
    co_host TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('INVITED', 'ACTIVE', 'ENDED')),
    invited_at_us INTEGER NOT NULL,
    started_at_us INTEGER,
    ended_at_us INTEGER,
    PRIMARY KEY (live_id, co_host)
) STRICT, WITHOUT ROWID;
"""

_SCHEMA_V1_POSTGRES = """
CREATE TABLE room_event (
    live_id TEXT NOT NULL,
    sequence BIGINT NOT NULL CHECK (sequence > 0),
    kind TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at_us BIGINT NOT NULL,
    message_id TEXT,
    feed_sequence BIGINT,
    PRIMARY KEY (live_id, sequence)
);
CREATE UNIQUE INDEX room_event_gift ON room_event (live_id, feed_sequence) WHERE feed_sequence IS NOT NULL;
CREATE FUNCTION room_event_numbers_without_gaps() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.sequence <> 1 + COALESCE((SELECT MAX(sequence) FROM room_event WHERE live_id = NEW.live_id), 0) THEN
        RAISE EXCEPTION 'room_event numbers a room without gaps' USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER room_event_numbers_without_gaps BEFORE INSERT ON room_event
    FOR EACH ROW EXECUTE FUNCTION room_event_numbers_without_gaps();

CREATE TABLE chat_message (
    message_id TEXT PRIMARY KEY,
    live_id TEXT NOT NULL,
    host TEXT NOT NULL,
    author TEXT NOT NULL,
    request_id TEXT NOT NULL,
    text_sealed BYTEA,
    sent_at_us BIGINT NOT NULL,
    sequence BIGINT NOT NULL,
    deleted_at_us BIGINT,
    UNIQUE (author, request_id)
);
CREATE INDEX chat_by_author ON chat_message (author, live_id, sent_at_us);

CREATE TABLE question (
    question_id TEXT PRIMARY KEY,
    live_id TEXT NOT NULL,
    host TEXT NOT NULL,
    author TEXT NOT NULL,
    request_id TEXT NOT NULL,
    text_sealed BYTEA,
    state TEXT NOT NULL CHECK (state IN ('OPEN', 'ANSWERING', 'ANSWERED', 'DISMISSED')),
    upvotes BIGINT NOT NULL DEFAULT 0 CHECK (upvotes >= 0),
    submitted_at_us BIGINT NOT NULL,
    UNIQUE (author, request_id)
);
CREATE INDEX question_by_author ON question (author, live_id, submitted_at_us);

CREATE TABLE question_vote (
    question_id TEXT NOT NULL REFERENCES question (question_id),
    voter TEXT NOT NULL,
    PRIMARY KEY (question_id, voter)
);

CREATE TABLE moderator (
    creator TEXT NOT NULL,
    user_id TEXT NOT NULL,
    appointed_at_us BIGINT NOT NULL,
    PRIMARY KEY (creator, user_id)
);

CREATE TABLE ban (
    creator TEXT NOT NULL,
    user_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    banned_by TEXT NOT NULL,
    banned_at_us BIGINT NOT NULL,
    PRIMARY KEY (creator, user_id)
);

CREATE TABLE mute (
    live_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    until_us BIGINT NOT NULL,
    reason TEXT NOT NULL,
    muted_by TEXT NOT NULL,
    PRIMARY KEY (live_id, user_id)
);

CREATE TABLE keyword_filter (
    creator TEXT PRIMARY KEY,
    keywords TEXT NOT NULL
);

CREATE TABLE room_settings (
    live_id TEXT PRIMARY KEY,
    slow_mode_us BIGINT NOT NULL CHECK (slow_mode_us >= 0),
    age_restricted BIGINT NOT NULL CHECK (age_restricted IN (0, 1))
);

CREATE TABLE co_host (
    live_id TEXT NOT NULL,
    host TEXT NOT NULL,
    co_host TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('INVITED', 'ACTIVE', 'ENDED')),
    invited_at_us BIGINT NOT NULL,
    started_at_us BIGINT,
    ended_at_us BIGINT,
    PRIMARY KEY (live_id, co_host)
);
"""

ROOM_MIGRATIONS = [Migration(1, _SCHEMA_V1, postgres=_SCHEMA_V1_POSTGRES), outbox_migration(2)]
ROOM_AREA = "room"


def room_database_path(root: Path | None = None) -> Path:
    """The room's SQLite file (where no `LIMELIGHT_DATABASE_URL` is set)."""
    return (root or data_dir()) / "gifts" / f"{ROOM_AREA}.db"


def open_room_database(root: Path | None = None, *, synchronous: str = "FULL") -> Database:
    return open_database("gifts", ROOM_MIGRATIONS, area=ROOM_AREA, synchronous=synchronous, root=root)


@dataclass(frozen=True)
class StoredEvent:
    """An event as the log replays it: chat and question texts still sealed."""

    event: RoomEvent
    author: str = ""
    sealed_text: bytes | None = None


class RoomUnitOfWork:
    """One unit of work of the room store (the store side of `usecases.room.RoomUnit`)."""

    def __init__(self, tx: Transaction) -> None:
        self._tx = tx
        self.appended: list[RoomEvent] = []

    def _one(self, sql: str, parameters: tuple[object, ...]) -> Row | None:
        row: Row | None = self._tx.execute(sql, parameters).fetchone()
        return row

    # The event log

    def append(self, live_id: str, at: dt.datetime, body_of: Callable[[int], object]) -> RoomEvent:
        """The room's next event, numbered here: `body_of(sequence)` builds its body."""
        row = self._one("SELECT COALESCE(MAX(sequence), 0) FROM room_event WHERE live_id = ?", (live_id,))
        sequence = (int(row[0]) if row else 0) + 1
        event = RoomEvent(live_id, sequence, at, body_of(sequence))  # type: ignore[arg-type]
        body = event.body
        message_id = getattr(getattr(body, "message", None), "message_id", None)
        self._tx.execute(
            "INSERT INTO room_event (live_id, sequence, kind, body, created_at_us, message_id, feed_sequence) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (live_id, sequence, type(body).__name__, body_to_json(without_text(body)), epoch_us(at),
             message_id if type(body).__name__ == "ChatPosted" else None, getattr(body, "feed_sequence", None)))
        self.appended.append(event)
        return event

    def last_feed_sequence(self, live_id: str) -> int:
        row = self._one("SELECT COALESCE(MAX(feed_sequence), 0) FROM room_event WHERE live_id = ?", (live_id,))
        return int(row[0]) if row else 0

    # Chat

    def chat_by_request(self, author: str, request_id: str) -> tuple[ChatMessage, bytes | None] | None:
        row = self._one("SELECT * FROM chat_message WHERE author = ? AND request_id = ?", (author, request_id))
        return (_chat_of(row), row["text_sealed"]) if row else None

    def chat(self, message_id: str) -> tuple[ChatMessage, bytes | None] | None:
        row = self._one("SELECT * FROM chat_message WHERE message_id = ?", (message_id,))
        return (_chat_of(row), row["text_sealed"]) if row else None

    def insert_chat(self, message: ChatMessage, sealed_text: bytes, request_id: str) -> None:
        self._tx.execute(
            "INSERT INTO chat_message (message_id, live_id, host, author, request_id, text_sealed, sent_at_us, "
            "sequence) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (message.message_id, message.live_id, message.host, message.author, request_id, sealed_text,
             epoch_us(message.sent_at), message.sequence))

    def delete_chat(self, message_id: str, now: dt.datetime) -> None:
        self._tx.execute("UPDATE chat_message SET text_sealed = NULL, deleted_at_us = ? WHERE message_id = ?",
                         (epoch_us(now), message_id))

    def last_post_at(self, live_id: str, user: str) -> dt.datetime | None:
        row = self._one(
            "SELECT MAX(at) FROM (SELECT MAX(sent_at_us) AS at FROM chat_message WHERE author = ? AND live_id = ? "
            "UNION ALL SELECT MAX(submitted_at_us) FROM question WHERE author = ? AND live_id = ?) AS posts",
            (user, live_id, user, live_id))
        return from_epoch_us(row[0]) if row and row[0] is not None else None

    # Q&A

    def question_by_request(self, author: str, request_id: str) -> tuple[Question, bytes | None] | None:
        row = self._one("SELECT * FROM question WHERE author = ? AND request_id = ?", (author, request_id))
        return (_question_of(row), row["text_sealed"]) if row else None

    def question(self, question_id: str) -> tuple[Question, bytes | None] | None:
        row = self._one("SELECT * FROM question WHERE question_id = ?", (question_id,))
        return (_question_of(row), row["text_sealed"]) if row else None

    def insert_question(self, question: Question, sealed_text: bytes, request_id: str) -> None:
        self._tx.execute(
            "INSERT INTO question (question_id, live_id, host, author, request_id, text_sealed, state, upvotes, "
            "submitted_at_us) VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)",
            (question.question_id, question.live_id, question.host, question.author, request_id, sealed_text,
             question.state.value, epoch_us(question.submitted_at)))

    def set_question_state(self, question_id: str, state: QuestionState) -> None:
        erase = ", text_sealed = NULL" if state is QuestionState.DISMISSED else ""
        self._tx.execute(f"UPDATE question SET state = ?{erase} WHERE question_id = ?", (state.value, question_id))

    def add_vote(self, question_id: str, voter: str) -> bool:
        added = self._tx.execute("INSERT INTO question_vote (question_id, voter) VALUES (?, ?) "
                                 "ON CONFLICT (question_id, voter) DO NOTHING", (question_id, voter)).rowcount == 1
        if added:
            self._tx.execute("UPDATE question SET upvotes = upvotes + 1 WHERE question_id = ?", (question_id,))
        return added

    # Moderation

    def is_moderator(self, creators: tuple[str, ...], user: str) -> bool:
        marks = ",".join("?" * len(creators))
        row = self._one(f"SELECT 1 FROM moderator WHERE user_id = ? AND creator IN ({marks})", (user, *creators))
        return row is not None

    def moderator(self, creator: str, user: str) -> Moderator | None:
        row = self._one("SELECT * FROM moderator WHERE creator = ? AND user_id = ?", (creator, user))
        return Moderator(row["creator"], row["user_id"], from_epoch_us(row["appointed_at_us"])) if row else None

    def put_moderator(self, moderator: Moderator) -> None:
        self._tx.execute("INSERT INTO moderator (creator, user_id, appointed_at_us) VALUES (?, ?, ?)",
                         (moderator.creator, moderator.user, epoch_us(moderator.appointed_at)))

    def remove_moderator(self, creator: str, user: str) -> None:
        self._tx.execute("DELETE FROM moderator WHERE creator = ? AND user_id = ?", (creator, user))

    def bans(self, creators: tuple[str, ...], user: str) -> tuple[Ban, ...]:
        marks = ",".join("?" * len(creators))
        found = self._tx.execute(f"SELECT * FROM ban WHERE user_id = ? AND creator IN ({marks}) ORDER BY creator",
                                 (user, *creators)).fetchall()
        return tuple(_ban_of(row) for row in found)

    def put_ban(self, ban: Ban) -> None:
        self._tx.execute("INSERT INTO ban (creator, user_id, reason, banned_by, banned_at_us) VALUES (?, ?, ?, ?, ?)",
                         (ban.creator, ban.user, ban.reason, ban.banned_by, epoch_us(ban.banned_at)))

    def remove_ban(self, creator: str, user: str) -> None:
        self._tx.execute("DELETE FROM ban WHERE creator = ? AND user_id = ?", (creator, user))

    def muted_until(self, live_id: str, user: str) -> dt.datetime | None:
        row = self._one("SELECT until_us FROM mute WHERE live_id = ? AND user_id = ?", (live_id, user))
        return from_epoch_us(row[0]) if row else None

    def put_mute(self, live_id: str, user: str, until: dt.datetime, reason: str, muted_by: str) -> None:
        self._tx.execute(
            "INSERT INTO mute (live_id, user_id, until_us, reason, muted_by) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (live_id, user_id) DO UPDATE SET until_us = excluded.until_us, reason = excluded.reason, "
            "muted_by = excluded.muted_by", (live_id, user, epoch_us(until), reason, muted_by))

    def keywords(self, creators: tuple[str, ...]) -> tuple[str, ...]:
        marks = ",".join("?" * len(creators))
        found = self._tx.execute(f"SELECT keywords FROM keyword_filter WHERE creator IN ({marks}) ORDER BY creator",
                                 creators).fetchall()
        return tuple(str(keyword) for row in found for keyword in json.loads(row[0]))

    def put_keywords(self, creator: str, keywords: tuple[str, ...]) -> None:
        self._tx.execute("INSERT INTO keyword_filter (creator, keywords) VALUES (?, ?) "
                         "ON CONFLICT (creator) DO UPDATE SET keywords = excluded.keywords",
                         (creator, json.dumps(list(keywords))))

    # Settings and co-hosts

    def settings(self, live_id: str) -> RoomSettings:
        row = self._one("SELECT * FROM room_settings WHERE live_id = ?", (live_id,))
        if row is None:
            return RoomSettings(live_id)
        return RoomSettings(live_id, dt.timedelta(microseconds=row["slow_mode_us"]), bool(row["age_restricted"]))

    def put_settings(self, settings: RoomSettings) -> None:
        self._tx.execute(
            "INSERT INTO room_settings (live_id, slow_mode_us, age_restricted) VALUES (?, ?, ?) "
            "ON CONFLICT (live_id) DO UPDATE SET slow_mode_us = excluded.slow_mode_us, "
            "age_restricted = excluded.age_restricted",
            (settings.live_id, settings.slow_mode // dt.timedelta(microseconds=1), int(settings.age_restricted)))

    def co_hosts(self, live_id: str) -> list[CoHost]:
        found = self._tx.execute("SELECT * FROM co_host WHERE live_id = ? ORDER BY invited_at_us", (live_id,))
        return [_co_host_of(row) for row in found.fetchall()]

    def put_co_host(self, co_host: CoHost) -> None:
        self._tx.execute(
            "INSERT INTO co_host (live_id, host, co_host, state, invited_at_us, started_at_us, ended_at_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (live_id, co_host) DO UPDATE SET state = excluded.state, "
            "invited_at_us = excluded.invited_at_us, started_at_us = excluded.started_at_us, "
            "ended_at_us = excluded.ended_at_us",
            (co_host.live_id, co_host.host, co_host.co_host, co_host.state.value, epoch_us(co_host.invited_at),
             _us(co_host.started_at), _us(co_host.ended_at)))

    def erase_texts_of(self, author: str) -> int:
        """Erase what `author` wrote (beyond crypto-shredding, which makes it unreadable anyway)."""
        chats = self._tx.execute("UPDATE chat_message SET text_sealed = NULL WHERE author = ? "
                                 "AND text_sealed IS NOT NULL", (author,)).rowcount
        questions = self._tx.execute("UPDATE question SET text_sealed = NULL WHERE author = ? "
                                     "AND text_sealed IS NOT NULL", (author,)).rowcount
        return int(chats) + int(questions)

    def record_audit(self, traced: TracedEvent) -> None:
        write_event(self._tx, traced)


def _us(moment: dt.datetime | None) -> int | None:
    return epoch_us(moment) if moment is not None else None


def _moment(value: int | None) -> dt.datetime | None:
    return from_epoch_us(value) if value is not None else None


def _chat_of(row: Row) -> ChatMessage:
    return ChatMessage(row["message_id"], row["live_id"], row["host"], row["author"], "",
                       from_epoch_us(row["sent_at_us"]), row["sequence"], row["deleted_at_us"] is not None)


def _question_of(row: Row) -> Question:
    return Question(row["question_id"], row["live_id"], row["host"], row["author"], "", QuestionState(row["state"]),
                    row["upvotes"], from_epoch_us(row["submitted_at_us"]))


def _ban_of(row: Row) -> Ban:
    return Ban(row["creator"], row["user_id"], row["reason"], row["banned_by"], from_epoch_us(row["banned_at_us"]))


def _co_host_of(row: Row) -> CoHost:
    return CoHost(row["live_id"], row["host"], row["co_host"], CoHostState(row["state"]),
                  from_epoch_us(row["invited_at_us"]), _moment(row["started_at_us"]), _moment(row["ended_at_us"]))


class RoomStore:
    """Owns the room database: its group committer for writes, a reader for replays and exports."""

    def __init__(self, writer: Database) -> None:
        self._writer = writer
        self._reader = writer.open_reader()
        self._committer = GroupCommitter(self._writer, name="room-commit")
        self.outbox = DatabaseAuditOutbox(self._writer, committer=self._committer)
        self.engine = writer.engine
        # Events of the units in the batch being committed (committer thread only), handed to
        # the listeners after the COMMIT in sequence order: a room's events are numbered by
        # units that run one after another, so commit order is sequence order.
        self._batch_events: list[RoomEvent] = []
        self._event_listeners: list[Callable[[list[RoomEvent]], None]] = []
        self._committer.add_commit_listener(self._tell_event_listeners)

    @classmethod
    def of_service(cls, root: Path | None = None) -> RoomStore:
        return cls(open_room_database(root))

    async def run(self, work: Callable[[RoomUnitOfWork], R],
                  on_refused: Callable[[RoomUnitOfWork, DomainError], None] | None = None) -> R:
        """`work` in the next durable batch; `on_refused` writes a refusal's audit event there."""
        refused = None if on_refused is None else (lambda tx, error: on_refused(RoomUnitOfWork(tx), error))

        def unit(tx: Transaction) -> R:
            room = RoomUnitOfWork(tx)
            result = work(room)
            self._batch_events.extend(room.appended)  # reached only by a unit that was not rolled back
            return result

        return await self._committer.run(unit, on_refused=refused)

    def add_event_listener(self, listener: Callable[[list[RoomEvent]], None]) -> None:
        """Call `listener(events)` on the committer thread after each commit that added events,
        in their order. It must be quick and thread-safe."""
        self._event_listeners.append(listener)

    def _tell_event_listeners(self) -> None:
        if not self._batch_events:
            return
        events, self._batch_events = self._batch_events, []
        for listener in self._event_listeners:
            listener(events)

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        self._committer.add_commit_listener(listener)

    # Reads (call off the event loop)

    def events_after(self, live_id: str, after: int, limit: int) -> list[StoredEvent]:
        """The room's events after `after`, oldest first, chat texts sealed; deleted messages left out."""
        with self._reader.reading() as connection:
            found = connection.execute(
                "SELECT e.sequence, e.created_at_us, e.body, c.author, c.text_sealed, c.deleted_at_us "
                "FROM room_event AS e LEFT JOIN chat_message AS c ON c.message_id = e.message_id "
                "WHERE e.live_id = ? AND e.sequence > ? ORDER BY e.sequence LIMIT ?",
                (live_id, after, limit)).fetchall()
            events = [(row, body_from_json(row["body"])) for row in found if row["deleted_at_us"] is None]
            # A question event's author and sealed text, from the same snapshot (the log names the
            # question inside its body, which only Python reads on both engines).
            question_ids = sorted({body.question.question_id for _, body in events if isinstance(body, QuestionChanged)})
            questions: dict[str, tuple[str, bytes | None]] = {}
            if question_ids:
                marks = ",".join("?" * len(question_ids))
                questions = {row[0]: (row[1], row[2]) for row in connection.execute(
                    f"SELECT question_id, author, text_sealed FROM question WHERE question_id IN ({marks})",
                    question_ids).fetchall()}
        stored: list[StoredEvent] = []
        for row, body in events:  # a deleted message is never replayed
            event = RoomEvent(live_id, row["sequence"], from_epoch_us(row["created_at_us"]), body)
            question = questions.get(body.question.question_id) if isinstance(body, QuestionChanged) else None
            if row["author"] is not None:
                stored.append(StoredEvent(event, row["author"], row["text_sealed"]))
            elif question is not None:
                stored.append(StoredEvent(event, question[0], question[1]))
            else:
                stored.append(StoredEvent(event))
        return stored

    def last_sequence(self, live_id: str) -> int:
        with self._reader.reading() as connection:
            row = connection.execute("SELECT COALESCE(MAX(sequence), 0) FROM room_event WHERE live_id = ?",
                                     (live_id,)).fetchone()
        return int(row[0])

    def read(self, query: Callable[[RoomUnitOfWork], R]) -> R:
        """A query with the unit's readers, on the reader connection (no writes)."""
        with self._reader.reading() as connection:
            return query(RoomUnitOfWork(connection))

    def written_by(self, author: str) -> tuple[list[tuple[ChatMessage, bytes | None]],
                                               list[tuple[Question, bytes | None]]]:
        """Everything `author` wrote in any room (for their data export), oldest first."""
        with self._reader.reading() as connection:
            chats = connection.execute("SELECT * FROM chat_message WHERE author = ? ORDER BY sent_at_us",
                                       (author,)).fetchall()
            questions = connection.execute("SELECT * FROM question WHERE author = ? ORDER BY submitted_at_us",
                                           (author,)).fetchall()
        return ([(_chat_of(row), row["text_sealed"]) for row in chats],
                [(_question_of(row), row["text_sealed"]) for row in questions])

    def close(self) -> None:
        self._committer.close()
        self._writer.close()
        self._reader.close()
