"""Fan-out of a LIVE room to the viewers' streams of this process, in batches.

One `LocalRoom` per room with viewers here holds the room's recent events in one shared
buffer; each viewer's `Subscription` is only a position in it. A room's flusher ticks at most
once per batch interval (250 ms) and only when something arrived: every subscriber then takes
the slice since its position as one batch, one gRPC message. Subscribers at the same position
get the same slice, so the servicer renders it once per tick and shares the message.

In a large room (`RoomPolicy.large_room_viewers`) a batch shows a sample of its chat (evenly
spaced, the same for everyone); gifts, Q&A, pins and moderation events are never dropped. A
viewer whose stream falls `max_pending_events` behind is closed (`STREAM_FELL_BEHIND`) and
resumes from its cursor, so a slow client never holds the room's memory.

Events arrive from the room bus (`room_bus.py`) in sequence order. A new subscriber joins
before it replays the store, and skips what it replayed: nothing missed, nothing repeated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from services.gifts.model.room import LiveEnded, RoomEvent, RoomPolicy, StatementIssued
from services.gifts.room_bus import RoomBus

log = logging.getLogger(__name__)


class StreamClosed(Exception):
    """Why a subscription ended: `reason` is `VIEWER_BANNED`, `STREAM_FELL_BEHIND` or `LIVE_ENDED`."""

    def __init__(self, reason: str, statement: StatementIssued | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.statement = statement


@dataclass(eq=False)
class Batch:
    """One batch; a shared one goes to every subscriber of the tick that starts where it does,
    and keeps its rendering (`rendered`, the servicer's) for all of them."""

    events: list[RoomEvent]
    sampled_out: int
    last_sequence: int
    shared: bool
    first_sequence: int  # the lowest room sequence in the slice (a subscriber past it cannot share)
    closes: StreamClosed | None = None
    rendered: object = None


@dataclass(eq=False)
class Subscription:
    room: LocalRoom
    user: str
    position: int
    delivered: int = 0  # the last sequence this viewer has, replayed or live
    _seen_tick: int = field(default=0)

    async def next_batch(self) -> Batch:
        """The events since the last batch, once the room's next tick has them."""
        return await self.room.batch_for(self)


class LocalRoom:
    def __init__(self, live_id: str, policy: RoomPolicy, on_empty: Callable[[LocalRoom], None]) -> None:
        self.live_id = live_id
        self._policy = policy
        self._on_empty = on_empty
        self._entries: list[RoomEvent] = []
        self._base = 0  # the absolute index of _entries[0]
        self.subscribers: set[Subscription] = set()
        self._arrived = asyncio.Event()
        self._tick = 0
        self._ticked: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._batches: dict[tuple[int, int], Batch] = {}  # this tick's shared batches, by slice
        self.pins: object = None  # the latest pins, rendered (a fresh stream's first response)
        # The room's last sequence this room has, where events come from the store rather than
        # a bus (replicas over PostgreSQL without Redis: `RoomParts`).
        self.taken_through = 0
        self._flusher = asyncio.create_task(self._flush_forever(), name=f"room-flusher-{live_id}")

    @property
    def end(self) -> int:
        return self._base + len(self._entries)

    def deliver(self, events: list[RoomEvent]) -> None:
        self._entries.extend(events)
        self._arrived.set()

    def join(self, user: str) -> Subscription:
        subscription = Subscription(self, user, self.end, _seen_tick=self._tick)
        self.subscribers.add(subscription)
        return subscription

    def leave(self, subscription: Subscription) -> None:
        self.subscribers.discard(subscription)
        if not self.subscribers:
            self._on_empty(self)

    async def close(self) -> None:
        self._flusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._flusher
        if not self._ticked.done():
            self._ticked.cancel()

    async def _flush_forever(self) -> None:
        interval = self._policy.batch_interval.total_seconds()
        while True:
            await self._arrived.wait()
            self._arrived.clear()
            self._trim()
            self._tick += 1
            self._batches = {}
            ticked, self._ticked = self._ticked, asyncio.get_running_loop().create_future()
            ticked.set_result(None)
            await asyncio.sleep(interval)

    def _trim(self) -> None:
        if not self.subscribers:
            drop = len(self._entries)
        else:
            drop = min(subscription.position for subscription in self.subscribers) - self._base
        if drop > 0:
            del self._entries[:drop]
            self._base += drop

    async def batch_for(self, subscription: Subscription) -> Batch:
        while subscription.position >= self.end or subscription._seen_tick >= self._tick:
            await asyncio.shield(self._ticked)
        subscription._seen_tick = self._tick
        start, end = subscription.position, self.end
        if end - start > self._policy.max_pending_events:
            raise StreamClosed("STREAM_FELL_BEHIND")
        subscription.position = end
        cached = self._batches.get((start, end))
        if cached is not None and subscription.delivered < cached.first_sequence:
            subscription.delivered = max(subscription.delivered, cached.last_sequence)
            return cached
        taken = self._entries[start - self._base:end - self._base]
        # A slice of state alone (pins, an end) has no sequence to share a cursor by: it is not shared.
        first = min((event.sequence for event in taken if event.sequence), default=0)
        shareable = subscription.delivered < first and all(event.audience is None for event in taken)
        events = [event for event in taken if (event.sequence == 0 or event.sequence > subscription.delivered)
                  and event.audience in (None, subscription.user)]
        closes = None
        for index, event in enumerate(events):
            if isinstance(event.body, StatementIssued) and event.body.closes_stream:
                events, closes = events[:index + 1], StreamClosed("VIEWER_BANNED", event.body)
                shareable = False
                break
            if isinstance(event.body, LiveEnded):
                events, closes = events[:index + 1], StreamClosed("LIVE_ENDED")
                break
        events, sampled_out = self._sample(events)
        # The cursor passes what was sampled away or addressed to others, not what follows a close.
        through = events if closes is not None else taken
        last = max((event.sequence for event in through), default=0)
        subscription.delivered = max(subscription.delivered, last)
        batch = Batch(events, sampled_out, subscription.delivered, shareable, first, closes)
        if shareable:
            self._batches[(start, end)] = batch
        return batch

    def _sample(self, events: list[RoomEvent]) -> tuple[list[RoomEvent], int]:
        """Every event, unless the room is large: then an even sample of its chat, and the rest whole."""
        if len(self.subscribers) < self._policy.large_room_viewers:
            return events, 0
        chat = [index for index, event in enumerate(events) if event.droppable]
        keep = self._policy.chat_per_batch_in_large_rooms
        if len(chat) <= keep:
            return events, 0
        step = len(chat) / keep
        kept = {chat[int(index * step)] for index in range(keep)}
        sampled = [event for index, event in enumerate(events) if not event.droppable or index in kept]
        return sampled, len(chat) - keep


class RoomHub:
    """The rooms with viewers in this process, fed by the room bus."""

    def __init__(self, bus: RoomBus, policy: RoomPolicy, *, last_sequence: Callable[[str], Awaitable[int]],
                 on_first_viewer: Callable[[LocalRoom], None], on_last_viewer: Callable[[LocalRoom], None]) -> None:
        self._bus = bus
        self._policy = policy
        self._last_sequence = last_sequence
        self._on_first_viewer = on_first_viewer
        self._on_last_viewer = on_last_viewer
        self._rooms: dict[str, LocalRoom] = {}
        self._opening: dict[str, asyncio.Future[LocalRoom]] = {}

    async def join(self, live_id: str, user: str) -> Subscription:
        room = self._rooms.get(live_id)
        if room is None:
            room = await self._open(live_id)
        return room.join(user)

    async def _open(self, live_id: str) -> LocalRoom:
        opening = self._opening.get(live_id)
        if opening is not None:
            return await asyncio.shield(opening)
        future: asyncio.Future[LocalRoom] = asyncio.get_running_loop().create_future()
        self._opening[live_id] = future
        try:
            room = LocalRoom(live_id, self._policy, self._emptied)
            after = await self._last_sequence(live_id)
            room.taken_through = after
            self._bus.subscribe(live_id, after, room.deliver)
            self._rooms[live_id] = room
            self._on_first_viewer(room)
            future.set_result(room)
            return room
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # retrieved: the waiters re-raise it
            raise
        finally:
            del self._opening[live_id]

    def _emptied(self, room: LocalRoom) -> None:
        if self._rooms.get(room.live_id) is room:
            del self._rooms[room.live_id]
            self._bus.unsubscribe(room.live_id, room.deliver)
            self._on_last_viewer(room)
            asyncio.get_running_loop().create_task(room.close())

    async def close(self) -> None:
        for room in list(self._rooms.values()):
            self._bus.unsubscribe(room.live_id, room.deliver)
            await room.close()
        self._rooms.clear()
