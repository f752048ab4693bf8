"""The shipper of the shop's delivery outbox: order events to affiliate, pins to the ad repository.

An entry is written in the same transaction as the change it reports (`Unit.deliver`), so it
exists exactly when the change does. The shipper takes the oldest due entries (for a lease, so
another replica's shipper leaves them alone), sends them, removes each once the other side took
it, and otherwise tries again later with a growing delay (affiliate may be down, or not built yet
and answer UNIMPLEMENTED): a delivery never blocks nor fails the call that caused it. Requests carry ids derived from the event, so a resend has one effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import datetime as dt
import logging
from collections.abc import Awaitable, Callable

import grpc

from libs.clock import Clock
from libs.kit.telemetry import continued_trace
from services.shop.affiliate import ATTRIBUTE_ORDER, ORDER_EVENT, AffiliateClient
from services.shop.clients import AdRepositoryClient
from services.shop.store import Delivery, ShopStore

logger = logging.getLogger(__name__)

REGISTER_AD = "compliance.register_ad"
MAX_BACKOFF = dt.timedelta(minutes=5)
POLL_SECONDS = 1.0
BATCH = 100
# How long a shipper holds the entries it took: longer than a batch of sends can take (100 calls
# of at most 5 s), so no other replica sends them meanwhile; if this replica dies, they are due
# again when it ends.
CLAIM_LEASE = dt.timedelta(minutes=10)


class DeliveryShipper:
    def __init__(self, store: ShopStore, affiliate: AffiliateClient, ads: AdRepositoryClient, *, clock: Clock,
                 on_ad_registered: Callable[[str, str], Awaitable[None]]) -> None:
        self._store = store
        self._affiliate = affiliate
        self._ads = ads
        self._clock = clock
        self._on_ad_registered = on_ad_registered
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[None] | None = None

    def wake(self) -> None:
        """After a commit, from any thread."""
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._wake.set)

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        # It acts as the shop itself, never as the caller whose commit woke it.
        self._task = asyncio.create_task(self._ship_forever(), name="shop-deliveries", context=contextvars.Context())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def ship_due(self) -> int:
        """Send every due entry once; returns how many were delivered."""
        delivered = 0
        for delivery in await self._store.claim_due_deliveries(self._clock(), BATCH, lease=CLAIM_LEASE):
            try:
                with continued_trace(delivery.trace_context):
                    await self._send(delivery)
            except grpc.aio.AioRpcError as error:
                delay = min(MAX_BACKOFF, dt.timedelta(seconds=2 ** min(delivery.attempts, 10)))
                if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                    logger.warning("delivery %s (%s) failed: %s", delivery.delivery_id, delivery.kind, error.code().name)
                await self._store.retry_later(delivery.delivery_id, self._clock() + delay, error.code().name)
                continue
            await self._store.delivered(delivery.delivery_id)
            delivered += 1
        return delivered

    async def _send(self, delivery: Delivery) -> None:
        if delivery.kind in (ATTRIBUTE_ORDER, ORDER_EVENT):
            await self._affiliate.send(delivery.kind, delivery.payload)
        elif delivery.kind == REGISTER_AD:
            ad = await self._ads.register(delivery.payload)
            await self._on_ad_registered(str(delivery.payload["pin"]), ad)
        else:
            raise AssertionError(f"unknown delivery kind {delivery.kind}")

    async def _ship_forever(self) -> None:
        while True:
            try:
                await self.ship_due()
            except Exception:  # one failed pass must not end shipping; the next one retries
                logger.exception("shop delivery pass failed")
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL_SECONDS)
