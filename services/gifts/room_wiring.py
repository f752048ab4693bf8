"""The LIVE room's parts, wired for one process: store, bus, hub, use cases, signals, pins.

`server.py` builds one `RoomParts` when the gifts service starts (after the ledger, whose
sessions and feed the room reads) and stops it first. What runs here:

- the room store's group committer (its own database, `store/room.py`), whose commit
  listener hands committed events to the room bus in commit order;
- the bus (`LIMELIGHT_GIFTS_ROOM_BUS`: in-process by default, Redis Streams across replicas);
  with the room store on PostgreSQL and no Redis, replicas share one event log and no bus, so
  each room's pump reads its new events from the store instead (`_take_from_store`): woken by
  this process's commits at once, by other replicas' within `PUMP_RECHECK_SECONDS`;
- the hub that fans the bus out to this process's streams, and per room with viewers here
  a pump that copies the ledger's new gifts into the room, notices the session's end and
  reads the shop's pins;
- the signals sender for ranking and the audit shipper of the room's outbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
from pathlib import Path
from typing import Any

from limelight.compliance.v1 import audit_pb2_grpc
from limelight.ranking.v1 import signals_pb2, signals_pb2_grpc
from limelight.shop.v1 import live_pins_pb2_grpc

from libs.audit.client import AuditClient, compliance_appender
from libs.audit.pseudonyms import Pseudonymizer
from libs.audit.spool import AuditSpool
from libs.clock import Clock
from libs.kit.server import ServiceRuntime
from libs.privacy.fields import PersonalData
from services.gifts.config import GiftsConfig
from services.gifts.live_signals import LiveSignals
from services.gifts.model.eligibility import AccountFacts
from services.gifts.model.live import LiveSession, LiveState
from services.gifts.model.room import ChatPosted, LiveEnded, PinsChanged, QuestionChanged, RoomEvent
from services.gifts.model.views import FeedItem
from services.gifts.room_bus import InProcessBus, RedisStreamsBus, RoomBus
from services.gifts.room_feed import LocalRoom, RoomHub
from services.gifts.room_pins import ShopPins
from services.gifts.room_signals import BatchingSignals
from services.gifts.store.reads import GiftsReader
from services.gifts.store.room import RoomStore, StoredEvent
from services.gifts.usecases.room import Room

log = logging.getLogger(__name__)
SIGNALS_TIMEOUT_SECONDS = 2.0
PUMP_RECHECK_SECONDS = 1.0
STORE_PAGE = 500


class LedgerLives:
    """The ledger reader as the room's `LiveDirectory` (queries off the event loop).

    A LIVE session is read once a second at most: every chat message needs it, and it changes
    only when it ends, which the ledger's commit listener reports (`forget`) and `state_at`
    tells by the clock."""

    SESSION_TTL_SECONDS = 1.0

    def __init__(self, reader: GiftsReader, clock: Clock) -> None:
        self._reader = reader
        self._clock = clock
        self._sessions: dict[str, tuple[float, LiveSession]] = {}

    async def live(self, live_id: str) -> LiveSession | None:
        now = time.monotonic()
        cached = self._sessions.get(live_id)
        if cached is not None and now - cached[0] < self.SESSION_TTL_SECONDS:
            return cached[1]
        session = await asyncio.to_thread(self._reader.live, live_id)
        if session is not None and session.ended_at is None:
            if len(self._sessions) > 10_000:
                self._sessions.clear()
            self._sessions[live_id] = (now, session)
        return session

    def forget(self, live_ids: frozenset[str]) -> None:
        """The ledger changed these sessions (gifts, or an end): read them afresh."""
        for live_id in live_ids:
            self._sessions.pop(live_id, None)

    async def open_live_of(self, creator: str) -> LiveSession | None:
        found = await asyncio.to_thread(self._reader.lives, host=creator, before_live_id=None, limit=1,
                                        state=LiveState.LIVE, now=self._clock())
        return found[0] if found else None

    async def account_facts(self, user_id: str) -> AccountFacts:
        return (await asyncio.to_thread(self._reader.account_standing, user_id)).facts

    async def feed(self, live_id: str, *, after_sequence: int, limit: int) -> list[FeedItem]:
        return await asyncio.to_thread(self._reader.feed, live_id, after_sequence=after_sequence, limit=limit)


def room_bus(config: GiftsConfig) -> RoomBus:
    if config.room_bus_url:
        return RedisStreamsBus(config.room_bus_url)
    return InProcessBus()


class RoomParts:
    """Everything the RoomService handlers reach, started and stopped together."""

    def __init__(self, runtime: ServiceRuntime, config: GiftsConfig, clock: Clock, reader: GiftsReader,
                 live_signals: LiveSignals, personal: PersonalData, *, root: Path | None) -> None:
        self.config = config
        self.policy = config.room
        self.clock = clock
        self.store = RoomStore.of_service(root)
        self.bus = room_bus(config)
        # Replicas over one PostgreSQL share the event log but not an in-process bus.
        self._from_store = self.store.engine == "postgres" and isinstance(self.bus, InProcessBus)
        self._committed_rooms: dict[str, asyncio.Event] = {}  # a pump's wake-up, set by this process's commits
        self.lives = LedgerLives(reader, clock)
        live_signals.add_listener(self.lives.forget)
        self._live_signals = live_signals
        self._loop = asyncio.get_running_loop()
        ranking = runtime.clients.stub("ranking", signals_pb2_grpc.SignalServiceStub)

        async def send(request: signals_pb2.RecordSignalsRequest) -> object:
            return await ranking.RecordSignals(request, timeout=SIGNALS_TIMEOUT_SECONDS)

        self.signals = BatchingSignals(send)
        self.pins = ShopPins(runtime.clients.stub("shop", live_pins_pb2_grpc.LivePinServiceStub))
        self.audit = AuditClient(
            service=runtime.name, spool=AuditSpool.open("gifts", root, area="room-audit-spool"),
            append=compliance_appender(runtime.clients.stub("compliance", audit_pb2_grpc.AuditServiceStub)),
            pseudonymizer=Pseudonymizer.for_deployment(root), clock=clock, outbox=self.store.outbox,
            telemetry=runtime.telemetry)
        self.room = Room(store=self.store, lives=self.lives, personal=personal, audit=self.audit,
                         signals=self.signals, policy=self.policy, min_followers=config.live.min_followers,
                         clock=clock)
        self.hub = RoomHub(self.bus, self.policy, last_sequence=self._last_sequence,
                           on_first_viewer=self._pump_room, on_last_viewer=self._stop_pump)
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self.store.add_event_listener(self._committed)

    async def _last_sequence(self, live_id: str) -> int:
        return await asyncio.to_thread(self.store.last_sequence, live_id)

    async def hub_last_sequence(self, live_id: str) -> int:
        return await self._last_sequence(live_id)

    async def replay(self, live_id: str, after: int, limit: int) -> list[StoredEvent]:
        return await asyncio.to_thread(self.store.events_after, live_id, after, limit)

    def _committed(self, events: list[RoomEvent]) -> None:
        """On the committer thread: publish on the loop, in commit order."""
        with contextlib.suppress(RuntimeError):  # the loop closed: the service is stopping
            self._loop.call_soon_threadsafe(self._publish, events)

    def _publish(self, events: list[RoomEvent]) -> None:
        if self._from_store:
            for live_id in {event.live_id for event in events}:
                if (committed := self._committed_rooms.get(live_id)) is not None:
                    committed.set()
        else:
            self.bus.publish(events)
        for event in events:
            body = event.body
            if type(body).__name__ == "GiftSent":
                self.signals.gift(f"creators/{body.creator}/lives/{event.live_id}",  # type: ignore[union-attr]
                                  f"users/{body.sender}", event.at)  # type: ignore[union-attr]

    async def opened(self, item: StoredEvent) -> RoomEvent:
        """A stored event with its chat or question text opened (empty once the author was erased)."""
        body = item.event.body
        if isinstance(body, ChatPosted) and item.sealed_text is not None:
            text = await self.room.open_text(item.author, item.sealed_text, question=False)
            return dataclasses.replace(item.event, body=ChatPosted(dataclasses.replace(body.message, text=text)))
        if isinstance(body, QuestionChanged) and item.sealed_text is not None:
            text = await self.room.open_text(item.author, item.sealed_text, question=True)
            return dataclasses.replace(item.event, body=QuestionChanged(dataclasses.replace(body.question, text=text)))
        return item.event

    async def _take_from_store(self, room: LocalRoom) -> None:
        """The room's events committed since the room last took some, by any replica, in order."""
        while True:
            stored = await self.replay(room.live_id, room.taken_through, STORE_PAGE)
            if not stored:
                return
            room.deliver([await self.opened(item) for item in stored])
            room.taken_through = stored[-1].event.sequence
            if len(stored) < STORE_PAGE:
                return

    async def start(self) -> None:
        await self.bus.start()
        await self.signals.start()
        if self.config.ship_audit:
            await self.audit.start()

    async def stop(self) -> None:
        for task in self._pumps.values():
            task.cancel()
        for task in list(self._pumps.values()):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.hub.close()
        await self.signals.stop()
        if self.config.ship_audit:
            await self.audit.stop()
        await self.bus.stop()
        await asyncio.to_thread(self.store.close)

    def wake_shipper(self) -> None:
        self.audit.wake_shipper()

    # The pump of a room with viewers here

    def _pump_room(self, room: LocalRoom) -> None:
        self._committed_rooms[room.live_id] = asyncio.Event()
        self._pumps[room.live_id] = asyncio.create_task(self._pump(room), name=f"room-pump-{room.live_id}")

    def _stop_pump(self, room: LocalRoom) -> None:
        self._committed_rooms.pop(room.live_id, None)
        task = self._pumps.pop(room.live_id, None)
        if task is not None:
            task.cancel()

    async def _pump(self, room: LocalRoom) -> None:
        live_id = room.live_id
        pins: tuple[object, ...] = ()  # none until the shop says otherwise
        pins_due = 0.0
        committed = self._committed_rooms[live_id]
        while True:
            waiter = self._live_signals.waiter(live_id)
            try:
                try:
                    committed.clear()
                    await self.room.copy_gifts(live_id)
                    if self._from_store:
                        await self._take_from_store(room)
                    session = await self.lives.live(live_id)
                    now = self.clock()
                    if session is None or session.state_at(now) is LiveState.ENDED:
                        room.deliver([RoomEvent(live_id, 0, now, LiveEnded())])
                        return
                    if self._loop.time() >= pins_due:
                        pins_due = self._loop.time() + self.policy.pins_refresh.total_seconds()
                        found = await self.pins.active_pins(session.name)
                        if found != pins:
                            pins = found
                            room.pins = found
                            room.deliver([RoomEvent(live_id, 0, now, PinsChanged(found))])
                except Exception:
                    log.exception("room pump for %s failed; retrying", live_id)
                woken = asyncio.create_task(committed.wait())
                wakes: set[asyncio.Future[Any]] = {waiter, woken}
                await asyncio.wait(wakes, timeout=PUMP_RECHECK_SECONDS, return_when=asyncio.FIRST_COMPLETED)
                woken.cancel()
            finally:
                self._live_signals.forget(live_id, waiter)


def view_time(joined: dt.datetime, left: dt.datetime) -> dt.timedelta:
    return max(left - joined, dt.timedelta(0))
