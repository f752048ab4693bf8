"""Room activity for ranking (`SignalService.RecordSignals`), batched, retried, never in the room's way.

The room calls `join`, `view`, `chat` and `gift` and returns at once: signals wait in a
bounded queue (`MAX_QUEUED`; beyond it the oldest are dropped, counted in `dropped`) and a
background task sends them every `FLUSH_SECONDS` (or at `BATCH` signals), grouped by viewer, one
RecordSignals call per viewer and batch, each with a deadline. UNAVAILABLE and
DEADLINE_EXCEEDED are retried with backoff; UNIMPLEMENTED (ranking's branch has not landed)
and any other refusal drop the batch with one log line, since room activity is a hint for
promotion, not a record anyone is owed. Event ids are fresh UUIDs, so ranking's
idempotency makes a retried batch harmless.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import grpc
from limelight.ranking.v1 import signals_pb2

from libs.timestamps import to_timestamp

log = logging.getLogger(__name__)

MAX_QUEUED = 50_000
BATCH = 500  # RecordSignalsRequest's limit per call
FLUSH_SECONDS = 1.0
MAX_ATTEMPTS = 4
_RETRIED = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}

Send = Callable[[signals_pb2.RecordSignalsRequest], Awaitable[object]]


@dataclass(frozen=True)
class _Queued:
    viewer: str
    signal: signals_pb2.Signal


class BatchingSignals:
    """The room's `ActivitySignals`, sending through `send` (a RecordSignals call with a deadline)."""

    def __init__(self, send: Send, *, flush_seconds: float = FLUSH_SECONDS) -> None:
        self._send = send
        self._flush_seconds = flush_seconds
        self._queue: collections.deque[_Queued] = collections.deque()
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sent = 0
        self.dropped = 0
        self._told: set[str] = set()  # the refusals logged already (once each: a hint is not worth a flood)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._send_forever(), name="room-signals")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def join(self, live: str, viewer: str, at: dt.datetime) -> None:
        self._add(live, viewer, at, signals_pb2.SIGNAL_TYPE_LIVE_JOIN)

    def view(self, live: str, viewer: str, at: dt.datetime, watched: dt.timedelta) -> None:
        self._add(live, viewer, at, signals_pb2.SIGNAL_TYPE_LIVE_VIEW, min(watched, dt.timedelta(hours=1)))

    def chat(self, live: str, viewer: str, at: dt.datetime) -> None:
        self._add(live, viewer, at, signals_pb2.SIGNAL_TYPE_LIVE_CHAT)

    def gift(self, live: str, viewer: str, at: dt.datetime) -> None:
        self._add(live, viewer, at, signals_pb2.SIGNAL_TYPE_LIVE_GIFT)

    def _add(self, live: str, viewer: str, at: dt.datetime, kind: int,
             watched: dt.timedelta | None = None) -> None:
        signal = signals_pb2.Signal(event_id=str(uuid.uuid4()), live=live, type=kind,  # type: ignore[arg-type]
                                    occur_time=to_timestamp(at))
        if watched is not None:
            signal.watch_time.FromTimedelta(watched)
        if len(self._queue) >= MAX_QUEUED:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(_Queued(viewer, signal))
        if len(self._queue) >= BATCH:
            self._ready.set()

    async def _send_forever(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._ready.wait(), timeout=self._flush_seconds)
            self._ready.clear()
            await self.flush()

    async def flush(self) -> None:
        """Send what is queued now, grouped by viewer."""
        taken = [self._queue.popleft() for _ in range(min(len(self._queue), BATCH * 20))]
        by_viewer: dict[str, list[signals_pb2.Signal]] = {}
        for queued in taken:
            by_viewer.setdefault(queued.viewer, []).append(queued.signal)
        for viewer, signals in by_viewer.items():
            for start in range(0, len(signals), BATCH):
                await self._deliver(viewer, signals[start:start + BATCH])

    async def _deliver(self, viewer: str, signals: Sequence[signals_pb2.Signal]) -> None:
        request = signals_pb2.RecordSignalsRequest(viewer=viewer, signals=signals)
        delay = 0.2
        for attempt in range(MAX_ATTEMPTS):
            try:
                await self._send(request)
                self.sent += len(signals)
                return
            except grpc.aio.AioRpcError as error:
                if error.code() in _RETRIED and attempt + 1 < MAX_ATTEMPTS:
                    await asyncio.sleep(delay)
                    delay *= 2
                    continue
                if error.code().name not in self._told:
                    self._told.add(error.code().name)
                    log.warning("ranking did not take room signals (%s: %s); they are dropped",
                                error.code().name, error.details())
                self.dropped += len(signals)
                return
