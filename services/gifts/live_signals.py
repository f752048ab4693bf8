"""Wakes StreamGifts subscribers when their LIVE gets gifts or ends."""

from __future__ import annotations

import asyncio
from collections.abc import Callable


class LiveSignals:
    """Wakes StreamGifts subscribers when their LIVE gets gifts or ends.

    Fed by the store's live listener on the committer thread; a subscriber takes its waiter
    before reading, so a commit between its read and its wait still wakes it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        self._listeners: list[Callable[[frozenset[str]], None]] = []

    def add_listener(self, listener: Callable[[frozenset[str]], None]) -> None:
        """Also call `listener(live_ids)` on the event loop for every commit that touched them."""
        self._listeners.append(listener)

    def on_commit(self, live_ids: frozenset[str]) -> None:
        self._loop.call_soon_threadsafe(self._wake, live_ids)

    def _wake(self, live_ids: frozenset[str]) -> None:
        for listener in self._listeners:
            listener(live_ids)
        for live_id in live_ids:
            for waiter in self._waiters.pop(live_id, ()):
                if not waiter.done():
                    waiter.set_result(None)

    def waiter(self, live_id: str) -> asyncio.Future[None]:
        waiter: asyncio.Future[None] = self._loop.create_future()
        self._waiters.setdefault(live_id, set()).add(waiter)
        return waiter

    def forget(self, live_id: str, waiter: asyncio.Future[None]) -> None:
        waiters = self._waiters.get(live_id)
        if waiters is not None:
            waiters.discard(waiter)
            if not waiters:
                del self._waiters[live_id]
