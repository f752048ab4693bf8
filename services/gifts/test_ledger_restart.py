"""A ledger process killed alone is seen (health NOT_SERVING) and restarted, and retries apply once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from limelight.gifts.v1 import gifts_pb2

from services.gifts.runner import SupervisedLedger
from services.gifts.server import GIFT, WALLET
from services.gifts.store.schema import database_path
from services.gifts.test_server import UNLIMITED, Gifts, details, start_gifts

SERVING, NOT_SERVING = health_pb2.HealthCheckResponse.SERVING, health_pb2.HealthCheckResponse.NOT_SERVING
DEADLINE_SECONDS = 60


async def statuses(channel: grpc.aio.Channel, service: str) -> AsyncIterator[int]:
    async for reply in health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest(service=service)):
        yield reply.status


async def test_a_killed_ledger_process_goes_not_serving_restarts_and_retries_apply_once(tmp_path: Path) -> None:
    running, service, clock = await start_gifts(tmp_path, UNLIMITED, ledger_process=True)
    gifts = Gifts(running, service, tmp_path, clock)
    channel = grpc.aio.insecure_channel(running.target)
    try:
        live = await gifts.go_live("carol")
        await gifts.top_up("alice")
        sender, auth = gifts.stubs().gifts, gifts.auth("users/alice")
        watches = [statuses(channel, name).__aiter__() for name in (GIFT, WALLET)]
        assert [await anext(watch) for watch in watches] == [SERVING, SERVING]
        ledger = service.runner
        assert isinstance(ledger, SupervisedLedger) and ledger.process.pid is not None
        killed = ledger.process.pid
        requests = [gifts.gift_request(live, "rose") for _ in range(200)]
        outcomes: dict[str, gifts_pb2.SendGiftResponse | grpc.aio.AioRpcError] = {}
        answered = asyncio.Event()

        async def send(request: gifts_pb2.SendGiftRequest) -> gifts_pb2.SendGiftResponse:
            response: gifts_pb2.SendGiftResponse = await sender.SendGift(request, metadata=auth)
            return response

        async def client(mine: list[gifts_pb2.SendGiftRequest]) -> None:
            for request in mine:
                try:
                    outcomes[request.request_id] = await send(request)
                except grpc.aio.AioRpcError as error:
                    outcomes[request.request_id] = error
                answered.set()

        clients = [asyncio.create_task(client(requests[start::8])) for start in range(8)]
        # Killed once a gift is answered, while the eight clients keep sending.
        await asyncio.wait_for(answered.wait(), DEADLINE_SECONDS)
        os.kill(killed, signal.SIGKILL)
        await asyncio.wait_for(asyncio.gather(*clients), DEADLINE_SECONDS)
        failed = [outcome for outcome in outcomes.values() if isinstance(outcome, grpc.aio.AioRpcError)]
        assert failed, "the kill hit no call"
        for error in failed:
            assert error.code() == grpc.StatusCode.UNAVAILABLE
            assert details(error)[0].reason == "LEDGER_PROCESS_GONE"
        for watch in watches:  # every gifts service reports the gap, then its end
            assert await asyncio.wait_for(anext(watch), DEADLINE_SECONDS) == NOT_SERVING
            assert await asyncio.wait_for(anext(watch), DEADLINE_SECONDS) == SERVING
        assert ledger.process.pid not in (None, killed)
        # The clients retry everything with the same request ids: each gift exists once.
        retried = await asyncio.wait_for(
            asyncio.gather(*(send(request) for request in requests)), DEADLINE_SECONDS)
        for request, again in zip(requests, retried, strict=True):
            first = outcomes[request.request_id]
            if isinstance(first, gifts_pb2.SendGiftResponse):
                assert again.gift_transfer.name == first.gift_transfer.name
        with sqlite3.connect(database_path(tmp_path)) as connection:
            per_request = connection.execute("SELECT COUNT(*), COUNT(DISTINCT request_id) FROM gift").fetchone()
        assert per_request == (200, 200)
        assert await gifts.coins("alice") == 1_000 - 200
    finally:
        await channel.close()
        await gifts.close()
        await running.stop(grace=0)
