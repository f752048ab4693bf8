"""kill -9 of the gifts process under load, then a restart: acknowledged means durable, once.

The service runs as a real subprocess (`run_service_process`, as `limelight serve gifts` does),
with synchronous=FULL group commit. Clients send gifts until the process is killed with
SIGKILL; after a restart on the same data directory every acknowledged gift is there
exactly once, its retry answers the same, and the ledger invariants hold.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from limelight.gifts.v1 import (
    gifts_pb2,
    gifts_pb2_grpc,
    live_pb2,
    live_pb2_grpc,
    standing_pb2,
    standing_pb2_grpc,
    wallet_pb2,
    wallet_pb2_grpc,
)

from libs.auth.keys import load_or_create_private_key
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.testing import ServiceProcess
from libs.ports import reserve_port
from services.gifts.model.payments import LocalPaymentProvider, Purchase
from services.gifts.test_ledger_properties import reference_balances

SENDERS = 32
LOAD_SECONDS = 1.5


@pytest.fixture
def gifts_process(tmp_path: Path) -> Iterator[ServiceProcess]:
    # No compliance runs here: LIVE titles are sealed under keys in the child's memory.
    process = ServiceProcess("gifts", tmp_path, reserve_port(), {"LIMELIGHT_DATA_KEYS": "ephemeral"})
    process.start()
    yield process
    process.stop()


def _auth(root: Path, subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
    claims = TokenClaims(subject, frozenset({Role.VIEWER, *roles}), birth_date=dt.date(1990, 1, 1))
    token = mint_token(platform_signing_key(root), claims, ttl=dt.timedelta(hours=1))
    return (("authorization", f"Bearer {token}"),)


async def _prepare(process: ServiceProcess, channel: grpc.aio.Channel) -> str:
    root = process.root
    standing = standing_pb2_grpc.AccountStandingServiceStub(channel)
    request = standing_pb2.UpdateAccountStandingRequest(
        standing=standing_pb2.AccountStanding(name="users/carol/standing", follower_count=5_000))
    request.update_mask.paths.append("follower_count")
    await standing.UpdateAccountStanding(request, metadata=_auth(root, "users/ops", Role.ADMIN))
    started = await live_pb2_grpc.LiveServiceStub(channel).StartLive(
        live_pb2.StartLiveRequest(parent="creators/carol", request_id=str(uuid.uuid4()), title="crash test"),
        metadata=_auth(root, "users/carol"))
    provider = LocalPaymentProvider.with_signing_key(
        load_or_create_private_key(root / "keys" / "local-payments-ed25519.pem"))
    wallet = wallet_pb2_grpc.WalletServiceStub(channel)
    now = dt.datetime.now(dt.UTC)
    for index in range(SENDERS):
        user = f"fan{index}"
        receipt = provider.issue_receipt(Purchase(str(uuid.uuid4()), user, "coins-1000", 1_000, 1_249, now))
        await wallet.TopUpCoins(wallet_pb2.TopUpCoinsRequest(
            request_id=str(uuid.uuid4()), wallet=f"users/{user}/wallet", coin_pack="coinPacks/coins-1000",
            receipt=wallet_pb2.PaymentReceipt(provider="local", receipt=receipt)), metadata=_auth(root, f"users/{user}"))
    return started.live_session.name


async def test_every_acknowledged_gift_survives_kill_9_exactly_once(gifts_process: ServiceProcess) -> None:
    await gifts_process.wait_serving()
    root = gifts_process.root
    acknowledged: dict[str, tuple[int, gifts_pb2.SendGiftRequest, str]] = {}
    attempted: dict[str, tuple[int, gifts_pb2.SendGiftRequest]] = {}
    async with grpc.aio.insecure_channel(gifts_process.target) as channel:
        live = await _prepare(gifts_process, channel)
        stub = gifts_pb2_grpc.GiftServiceStub(channel)

        async def fan(index: int) -> None:
            auth = _auth(root, f"users/fan{index}")
            while True:
                request = gifts_pb2.SendGiftRequest(request_id=str(uuid.uuid4()), live=live, gift="gifts/rose", count=1)
                attempted[request.request_id] = (index, request)
                try:
                    response = await stub.SendGift(request, metadata=auth, timeout=5)
                except grpc.aio.AioRpcError as error:
                    if error.code() is grpc.StatusCode.UNAVAILABLE:
                        return  # the process is gone
                    continue
                acknowledged[request.request_id] = (index, request, response.gift_transfer.name)

        load = [asyncio.create_task(fan(index)) for index in range(SENDERS)]
        await asyncio.sleep(LOAD_SECONDS)
        gifts_process.kill()
        await asyncio.wait(load, timeout=30)
    assert len(acknowledged) > 50, "the load never got going"

    gifts_process.start()
    await gifts_process.wait_serving()
    async with grpc.aio.insecure_channel(gifts_process.target) as channel:
        stub = gifts_pb2_grpc.GiftServiceStub(channel)
        for request_id, (index, request, name) in acknowledged.items():
            again = await stub.SendGift(request, metadata=_auth(root, f"users/fan{index}"), timeout=5)
            assert again.gift_transfer.name == name, request_id

    with sqlite3.connect(root / "gifts" / "gifts.db") as connection:
        gifts = dict(connection.execute("SELECT request_id, COUNT(*) FROM gift GROUP BY request_id").fetchall())
        assert all(gifts.get(request_id) == 1 for request_id in acknowledged)
        assert set(gifts) <= set(attempted)  # nothing from nowhere, each attempt at most once
        assert all(count == 1 for count in gifts.values())
        for currency, posted in connection.execute(
                "SELECT currency, SUM(credits_posted - debits_posted) FROM account GROUP BY currency"):
            assert posted == 0, currency
        negative = connection.execute("SELECT name FROM account WHERE may_go_negative = 0 AND "
                                      "credits_posted - debits_posted - debits_pending < 0").fetchall()
        assert negative == []
        balances = {row[0]: list(row[1:]) for row in connection.execute(
            "SELECT name, debits_posted, credits_posted, debits_pending, credits_pending FROM account")}
        folded = reference_balances(connection)
        assert all(folded.get(name, [0, 0, 0, 0]) == balance for name, balance in balances.items())
        for index in range(SENDERS):
            sent = connection.execute("SELECT COALESCE(SUM(coins), 0) FROM gift WHERE sender = ?",
                                      (f"fan{index}",)).fetchone()[0]
            left = balances[f"users/fan{index}/accounts/coins"]
            assert left[1] - left[0] == 1_000 - sent
