"""The room bus: how a room's committed events reach every process that has viewers of it.

`RoomBus` is the port. Its embedded default, `InProcessBus`, hands events to this process's
rooms directly. `RedisStreamsBus` puts them on a Redis Stream per room (`limelight:room:<live>`,
entry id `<sequence>-0`, capped at `MAX_STREAM_LENGTH` entries, about the longest session's
chat), so every replica subscribed to the room receives them in order, and a replica that
joins late reads the stream from the sequence it last has (`XREAD` from `<sequence>-0`):
the entry ids are the room's own sequence numbers, so a resume after a cursor is exact.

Publishing never blocks a room: events are queued and written by one task, in order; while
Redis is unreachable they wait (up to `MAX_QUEUED`, then the oldest batches are dropped from
the queue with an error log: viewers then resume from the store on reconnect).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Protocol

from services.gifts.model.room import RoomEvent
from services.gifts.store.room_events import event_from_bytes, event_to_bytes

log = logging.getLogger(__name__)

Deliver = Callable[[list[RoomEvent]], None]
MAX_STREAM_LENGTH = 200_000
MAX_QUEUED = 10_000
BLOCK_MS = 1_000


class RoomBus(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def publish(self, events: list[RoomEvent]) -> None:
        """Queue committed events (in sequence order per room) for every subscriber; never blocks."""
        ...

    def subscribe(self, live_id: str, after: int, deliver: Deliver) -> None:
        """Call `deliver(events)` on the event loop with the room's events after sequence `after`."""
        ...

    def unsubscribe(self, live_id: str, deliver: Deliver) -> None: ...


class InProcessBus:
    """One process: published events go straight to its rooms."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[Deliver]] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self._subscribers.clear()

    def publish(self, events: list[RoomEvent]) -> None:
        by_room: dict[str, list[RoomEvent]] = {}
        for event in events:
            by_room.setdefault(event.live_id, []).append(event)
        for live_id, room_events in by_room.items():
            for deliver in self._subscribers.get(live_id, ()):
                deliver(room_events)

    def subscribe(self, live_id: str, after: int, deliver: Deliver) -> None:
        # Events up to `after` are in the store already; later ones are published after the
        # subscription exists, since commits are published on this same event loop.
        self._subscribers.setdefault(live_id, []).append(deliver)

    def unsubscribe(self, live_id: str, deliver: Deliver) -> None:
        subscribers = self._subscribers.get(live_id, [])
        if deliver in subscribers:
            subscribers.remove(deliver)
        if not subscribers:
            self._subscribers.pop(live_id, None)


def stream_key(live_id: str) -> str:
    return f"limelight:room:{live_id}"


class RedisStreamsBus:
    """Rooms across replicas, on Redis Streams (`redis.asyncio`, hiredis parser)."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._client: Any = None
        self._queue: asyncio.Queue[list[RoomEvent]] = asyncio.Queue()
        self._subscribers: dict[str, list[Deliver]] = {}
        self._positions: dict[str, str] = {}  # stream key -> last entry id read
        self._changed = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        import redis.asyncio as redis

        self._client = redis.Redis.from_url(self._url)
        self._reader_client = redis.Redis.from_url(self._url)
        self._tasks = [asyncio.create_task(self._write_forever(), name="room-bus-writer"),
                       asyncio.create_task(self._read_forever(), name="room-bus-reader")]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._client is not None:
            await self._client.aclose()
            await self._reader_client.aclose()

    def publish(self, events: list[RoomEvent]) -> None:
        if self._queue.qsize() >= MAX_QUEUED:
            dropped = self._queue.get_nowait()
            log.error("room bus: Redis is behind; %d events not published (viewers resume from the store)",
                      len(dropped))
        self._queue.put_nowait(events)

    def subscribe(self, live_id: str, after: int, deliver: Deliver) -> None:
        key = stream_key(live_id)
        self._subscribers.setdefault(live_id, []).append(deliver)
        self._positions.setdefault(key, f"{after}-0")
        self._changed.set()

    def unsubscribe(self, live_id: str, deliver: Deliver) -> None:
        subscribers = self._subscribers.get(live_id, [])
        if deliver in subscribers:
            subscribers.remove(deliver)
        if not subscribers:
            self._subscribers.pop(live_id, None)
            self._positions.pop(stream_key(live_id), None)
            self._changed.set()

    async def _write_forever(self) -> None:
        while True:
            events = await self._queue.get()
            while True:
                try:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for event in events:
                            pipe.xadd(stream_key(event.live_id), {"e": event_to_bytes(event)},
                                      id=f"{event.sequence}-0", maxlen=MAX_STREAM_LENGTH, approximate=True)
                        await pipe.execute(raise_on_error=False)
                    break
                except (OSError, ConnectionError) as error:
                    log.warning("room bus: Redis unreachable (%s); retrying", error)
                    await asyncio.sleep(0.5)
                except Exception as error:  # redis.ConnectionError and kin
                    log.warning("room bus: Redis write failed (%s); retrying", error)
                    await asyncio.sleep(0.5)

    async def _read_forever(self) -> None:
        while True:
            if not self._positions:
                self._changed.clear()
                await self._changed.wait()
                continue
            try:
                streams: dict[Any, Any] = dict(self._positions)
                found: Any = await self._reader_client.xread(streams, block=BLOCK_MS, count=1_000)
            except Exception as error:
                log.warning("room bus: Redis read failed (%s); retrying", error)
                await asyncio.sleep(0.5)
                continue
            for raw_key, entries in found or ():
                key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
                if key not in self._positions or not entries:
                    continue
                self._positions[key] = entries[-1][0].decode() if isinstance(entries[-1][0], bytes) \
                    else entries[-1][0]
                events = [event_from_bytes(fields[b"e"]) for _, fields in entries]
                for deliver in list(self._subscribers.get(events[0].live_id, ())):
                    deliver(events)
