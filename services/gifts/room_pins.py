"""The shop's live pins for a room (`LivePinService.ListLivePins`), read through a port.

Until the shop's branch lands its service answers UNIMPLEMENTED: that, and a shop that is
down or slow, reads as "no pins" (the room shows none rather than failing), logged once per
kind of failure.
"""

from __future__ import annotations

import logging

import grpc
from limelight.shop.v1 import live_pins_pb2, live_pins_pb2_grpc

from services.gifts.model.room import Pin

log = logging.getLogger(__name__)
TIMEOUT_SECONDS = 2.0


class ShopPins:
    def __init__(self, stub: live_pins_pb2_grpc.LivePinServiceAsyncStub) -> None:
        self._stub = stub
        self._told: set[str] = set()

    async def active_pins(self, live: str) -> tuple[Pin, ...]:
        try:
            response = await self._stub.ListLivePins(live_pins_pb2.ListLivePinsRequest(parent=live, active_only=True),
                                                     timeout=TIMEOUT_SECONDS)
        except grpc.aio.AioRpcError as error:
            if error.code().name not in self._told:
                self._told.add(error.code().name)
                log.info("the shop's pins are unavailable (%s): rooms show none", error.code().name)
            return ()
        return tuple(Pin(pin.name, pin.product, pin.disclosure_label) for pin in response.live_pins if pin.active)
