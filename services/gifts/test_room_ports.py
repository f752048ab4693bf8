"""The room's ports to ranking and the shop, against real gRPC servers: one that does not
implement the services yet (UNIMPLEMENTED, as until their branches land) and one that does."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator

import grpc
import pytest
from limelight.ranking.v1 import signals_pb2, signals_pb2_grpc
from limelight.shop.v1 import live_pins_pb2, live_pins_pb2_grpc

from services.gifts.conftest import START
from services.gifts.model.room import Pin
from services.gifts.room_pins import ShopPins
from services.gifts.room_signals import BatchingSignals

LIVE = "creators/carol/lives/l1"


class Ranking(signals_pb2_grpc.SignalServiceServicer):
    def __init__(self, failures: int = 0) -> None:
        self.requests: list[signals_pb2.RecordSignalsRequest] = []
        self._failures = failures

    async def RecordSignals(self, request: signals_pb2.RecordSignalsRequest,
                            context: grpc.aio.ServicerContext[object, object]) -> signals_pb2.RecordSignalsResponse:
        if self._failures:
            self._failures -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "warming up")
        self.requests.append(request)
        return signals_pb2.RecordSignalsResponse()


class Shop(live_pins_pb2_grpc.LivePinServiceServicer):
    """Lists one pin; pinning is the shop's own business, not the room's."""

    async def PinProduct(self, request: live_pins_pb2.PinProductRequest,
                         context: grpc.aio.ServicerContext[object, object]) -> live_pins_pb2.PinProductResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")

    async def UnpinProduct(self, request: live_pins_pb2.UnpinProductRequest,
                           context: grpc.aio.ServicerContext[object, object]) -> live_pins_pb2.UnpinProductResponse:
        await context.abort(grpc.StatusCode.UNIMPLEMENTED, "not in this fake")

    async def ListLivePins(self, request: live_pins_pb2.ListLivePinsRequest,
                           context: grpc.aio.ServicerContext[object, object]) -> live_pins_pb2.ListLivePinsResponse:
        return live_pins_pb2.ListLivePinsResponse(live_pins=[live_pins_pb2.LivePin(
            name=f"{request.parent}/pins/p1", product="merchants/m/products/p", active=True,
            disclosure_label="Werbung")])


async def serve(*servicers: object) -> tuple[grpc.aio.Server, grpc.aio.Channel]:
    server = grpc.aio.server()
    for servicer in servicers:
        if isinstance(servicer, Ranking):
            signals_pb2_grpc.add_SignalServiceServicer_to_server(servicer, server)
        elif isinstance(servicer, Shop):
            live_pins_pb2_grpc.add_LivePinServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    return server, grpc.aio.insecure_channel(f"127.0.0.1:{port}")


@pytest.fixture
async def bare() -> AsyncIterator[grpc.aio.Channel]:
    server, channel = await serve()
    yield channel
    await channel.close()
    await server.stop(0)


def sender(channel: grpc.aio.Channel) -> BatchingSignals:
    stub = signals_pb2_grpc.SignalServiceStub(channel)

    async def send(request: signals_pb2.RecordSignalsRequest) -> object:
        return await stub.RecordSignals(request, timeout=2)

    return BatchingSignals(send)


async def test_room_signals_reach_ranking_batched_per_viewer_and_survive_a_retry() -> None:
    ranking = Ranking(failures=1)
    server, channel = await serve(ranking)
    signals = sender(channel)
    signals.join(LIVE, "users/vera", START)
    signals.chat(LIVE, "users/vera", START)
    signals.gift(LIVE, "users/bob", START)
    signals.view(LIVE, "users/vera", START, dt.timedelta(minutes=12))
    await signals.flush()
    assert {request.viewer: [signal.type for signal in request.signals] for request in ranking.requests} == {
        "users/vera": [signals_pb2.SIGNAL_TYPE_LIVE_JOIN, signals_pb2.SIGNAL_TYPE_LIVE_CHAT,
                       signals_pb2.SIGNAL_TYPE_LIVE_VIEW],
        "users/bob": [signals_pb2.SIGNAL_TYPE_LIVE_GIFT]}
    assert all(signal.live == LIVE for request in ranking.requests for signal in request.signals)
    assert signals.sent == 4 and signals.dropped == 0
    await channel.close()
    await server.stop(0)


async def test_a_ranking_without_record_signals_is_tolerated(bare: grpc.aio.Channel) -> None:
    signals = sender(bare)
    signals.chat(LIVE, "users/vera", START)
    await signals.flush()  # UNIMPLEMENTED: dropped, nothing raised
    assert (signals.sent, signals.dropped) == (0, 1)


async def test_a_shop_without_live_pins_reads_as_no_pins_and_one_with_them_lists_them(
        bare: grpc.aio.Channel) -> None:
    assert await ShopPins(live_pins_pb2_grpc.LivePinServiceStub(bare)).active_pins(LIVE) == ()
    server, channel = await serve(Shop())
    pins = await ShopPins(live_pins_pb2_grpc.LivePinServiceStub(channel)).active_pins(LIVE)
    assert pins == (Pin(f"{LIVE}/pins/p1", "merchants/m/products/p", "Werbung"),)
    await channel.close()
    await server.stop(0)
