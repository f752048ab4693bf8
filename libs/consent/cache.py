"""CheckConsent answers cached in the caller, dropped the moment compliance reports a change.

    cache = ConsentCache(runtime.clients.stub("compliance", consent_pb2_grpc.ConsentServiceStub))
    await cache.start()                      # opens WatchConsentChanges
    if await cache.permitted("users/ana", consent_pb2.CONSENT_PURPOSE_PERSONALISED_ADS): ...
    await cache.stop()

How it stays correct. Every CheckConsent answer carries the user's consent version (the
sequence of their latest record); WatchConsentChanges streams (user, new version) for every
committed change. The cache keeps one entry per user (the answer for every purpose, asked in
one call) with its version, and

- drops an entry when the stream reports a higher version for its user;
- refuses to store an answer older than a version the stream already reported (an answer
  that was in flight while the change went by);
- stores nothing while the stream is down, and forgets everything when it reconnects
  (changes may have gone by unseen): then every check asks compliance, which is slower and
  still right.

A withdrawal therefore reaches the cache as fast as one stream message (milliseconds). A
cached check is two dictionary look-ups: `cached()` is the hot path (well under 5 µs), and
`permitted()` awaits compliance only on a miss. Without a record the answer is no.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import grpc
from limelight.compliance.v1 import consent_pb2, consent_pb2_grpc

logger = logging.getLogger(__name__)

ALL_PURPOSES: tuple[str, ...] = tuple(
    name for name in consent_pb2.ConsentPurpose.keys() if name != "CONSENT_PURPOSE_UNSPECIFIED")
Metadata = Sequence[tuple[str, str]]


@dataclass(frozen=True)
class _Entry:
    version: int
    permitted: frozenset[int]


class ConsentCache:
    def __init__(self, stub: consent_pb2_grpc.ConsentServiceAsyncStub, *, capacity: int = 100_000,
                 metadata: Metadata | None = None, timeout: float = 2.0, max_backoff_seconds: float = 2.0,
                 watch_seconds: float = 600.0) -> None:
        """`metadata` is sent with every call (a plain channel); kit clients add the tokens themselves.
        `watch_seconds` is the change stream's deadline: it reconnects (and refills) that often."""
        self._stub = stub
        self._capacity = capacity
        self._metadata = tuple(metadata or ())
        self._timeout = timeout
        self._max_backoff = max_backoff_seconds
        self._watch_seconds = watch_seconds
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._reported: OrderedDict[str, int] = OrderedDict()  # the highest version the stream named, per user
        self._generation = 0  # bumped whenever the stream (re)connects or drops: answers from before are not kept
        self._live = False
        self._connected = asyncio.Event()
        self._watcher: asyncio.Task[None] | None = None

    # -- the hot path ----------------------------------------------------------------------

    def cached(self, subject: str, purpose: int) -> bool | None:
        """The cached answer, or None when compliance must be asked."""
        entry = self._entries.get(subject)
        return None if entry is None else purpose in entry.permitted

    async def permitted(self, subject: str, purpose: int) -> bool:
        entry = self._entries.get(subject)
        if entry is not None:
            return purpose in entry.permitted
        return purpose in (await self._fetch(subject)).permitted

    # -- misses --------------------------------------------------------------------------------

    async def _fetch(self, subject: str) -> _Entry:
        generation, live = self._generation, self._live
        response = await self._stub.CheckConsent(
            consent_pb2.CheckConsentRequest(parent=subject, purposes=ALL_PURPOSES),
            metadata=self._metadata, timeout=self._timeout)
        entry = _Entry(response.version, frozenset(d.purpose for d in response.decisions if d.permitted))
        if live and self._live and generation == self._generation and self._reported.get(subject, 0) <= entry.version:
            self._entries[subject] = entry
            self._entries.move_to_end(subject)
            while len(self._entries) > self._capacity:
                self._entries.popitem(last=False)
        return entry

    # -- invalidation ----------------------------------------------------------------------------

    def _changed(self, subject: str, version: int) -> None:
        if self._reported.get(subject, 0) < version:
            self._reported[subject] = version
            self._reported.move_to_end(subject)
            while len(self._reported) > self._capacity:
                self._reported.popitem(last=False)
        entry = self._entries.get(subject)
        if entry is not None and entry.version < version:
            del self._entries[subject]

    def _drop_everything(self) -> None:
        self._live = False
        self._generation += 1
        self._entries.clear()
        self._connected.clear()

    async def _watch_forever(self) -> None:
        backoff = 0.05
        while True:
            try:
                stream = self._stub.WatchConsentChanges(consent_pb2.WatchConsentChangesRequest(),
                                                        metadata=self._metadata, timeout=self._watch_seconds)
                async for change in stream:
                    if not change.subject:  # the head: the stream is live from here
                        self._drop_everything()
                        self._live = True
                        self._connected.set()
                        backoff = 0.05
                        continue
                    self._changed(change.subject, change.sequence)
            except grpc.aio.AioRpcError as error:
                logger.warning("consent change stream failed (%s); checks ask compliance until it is back",
                               error.code().name)
            self._drop_everything()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self._max_backoff)

    async def start(self) -> None:
        self._watcher = asyncio.create_task(self._watch_forever(), name="consent-cache-watch")

    async def wait_live(self, timeout: float = 5.0) -> None:
        """Until the change stream is live (answers are cached from then on)."""
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
        self._drop_everything()
