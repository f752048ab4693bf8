"""Two replicas of a service over one PostgreSQL keep the guarantees one process kept.

Each replica is a real child process (`ServiceProcess`, what `limelight serve` runs) on a port
of its own, over one PostgreSQL database on the test session's throwaway server, sharing the
data directory's keys. Compliance runs in this process and hands every replica the same data
keys, as it does on a platform. Clients reach the replicas by gRPC's round robin through a
target naming both, or one replica directly where the test must know which one served.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psycopg
import pytest
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc
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
from limelight.shop.v1 import (
    catalog_pb2,
    catalog_pb2_grpc,
    inventory_pb2,
    inventory_pb2_grpc,
    orders_pb2,
    orders_pb2_grpc,
)

from libs.audit.protos import timestamp
from libs.auth.keys import load_or_create_private_key
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, start_service
from libs.kit.testing import ServiceProcess, error_info
from libs.kit.transport import ROUND_ROBIN
from libs.ports import reserve_port
from libs.storage.database import DATABASE_URL_ENV
from libs.storage.testing import PostgresServer
from libs.tlog.checkpoint import open_checkpoint
from libs.tlog.note import NoteVerifier
from libs.tlog.proofs import verify_consistency
from services.compliance.server import build as build_compliance
from services.gifts.model.payments import LocalPaymentProvider, Purchase

Metadata = tuple[tuple[str, str], ...]


@dataclass
class Replicated:
    root: Path
    database_url: str
    compliance: RunningService
    started: list[ServiceProcess] = field(default_factory=list)

    def replicas(self, service: str, count: int = 2, **settings: str) -> list[ServiceProcess]:
        replicas = [
            ServiceProcess(service, self.root, reserve_port(), {
                DATABASE_URL_ENV: self.database_url,
                "LIMELIGHT_COMPLIANCE_TARGET": self.compliance.target,
                **settings,
            }, label=f"{service}-{index + 1}")
            for index in range(count)
        ]
        for replica in replicas:
            replica.start()
        self.started += replicas
        return replicas

    def auth(self, subject: str, *roles: Role) -> Metadata:
        claims = TokenClaims(subject, frozenset({Role.VIEWER, *roles}), birth_date=dt.date(1990, 1, 1))
        return (("authorization", f"Bearer {mint_token(platform_signing_key(self.root), claims, ttl=dt.timedelta(hours=1))}"),)

    def ledger(self, sql: str, parameters: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        with psycopg.connect(self.database_url, options="-c search_path=gifts") as connection:
            return list(connection.execute(sql.replace("?", "%s"), parameters).fetchall())


def round_robin(replicas: list[ServiceProcess]) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel("ipv4:" + ",".join(replica.target for replica in replicas), options=[ROUND_ROBIN])


@pytest.fixture
async def replicated(tmp_path: Path, postgres_server: PostgresServer) -> AsyncIterator[Replicated]:
    compliance = await start_service("compliance", build_compliance, port=0, data_root=tmp_path, targets={})
    cluster = Replicated(tmp_path, postgres_server.fresh_database(), compliance)
    try:
        yield cluster
    finally:
        for replica in cluster.started:
            replica.stop()
        await compliance.stop(grace=0)


# -- gifts: one wallet, many senders, two replicas ------------------------------------------------

COINS_PER_PACK = 1_000
DOUGHNUT = 30


def _payments(root: Path) -> LocalPaymentProvider:
    return LocalPaymentProvider.with_signing_key(load_or_create_private_key(root / "keys" / "local-payments-ed25519.pem"))


async def _live_with_fans(cluster: Replicated, channel: grpc.aio.Channel, fans: list[str]) -> str:
    admin = cluster.auth("users/ops", Role.ADMIN)
    request = standing_pb2.UpdateAccountStandingRequest(
        standing=standing_pb2.AccountStanding(name="users/carol/standing", follower_count=5_000))
    request.update_mask.paths.append("follower_count")
    await standing_pb2_grpc.AccountStandingServiceStub(channel).UpdateAccountStanding(request, metadata=admin)
    started = await live_pb2_grpc.LiveServiceStub(channel).StartLive(
        live_pb2.StartLiveRequest(parent="creators/carol", request_id=str(uuid.uuid4()), title="replicas"),
        metadata=cluster.auth("users/carol"))
    payments, wallet = _payments(cluster.root), wallet_pb2_grpc.WalletServiceStub(channel)
    for fan in fans:
        receipt = payments.issue_receipt(Purchase(str(uuid.uuid4()), fan, "coins-1000", COINS_PER_PACK, 1_249,
                                                  dt.datetime.now(dt.UTC)))
        await wallet.TopUpCoins(wallet_pb2.TopUpCoinsRequest(
            request_id=str(uuid.uuid4()), wallet=f"users/{fan}/wallet", coin_pack="coinPacks/coins-1000",
            receipt=wallet_pb2.PaymentReceipt(provider="local", receipt=receipt)), metadata=cluster.auth(f"users/{fan}"))
    return str(started.live_session.name)


def _gift(live: str, gift: str = "doughnut") -> gifts_pb2.SendGiftRequest:
    return gifts_pb2.SendGiftRequest(request_id=str(uuid.uuid4()), live=live, gift=f"gifts/{gift}", count=1)


def _assert_ledger_balanced(cluster: Replicated) -> None:
    for currency, posted in cluster.ledger(
            "SELECT currency, SUM(credits_posted - debits_posted) FROM account GROUP BY currency"):
        assert posted == 0, currency
    assert cluster.ledger("SELECT name FROM account WHERE may_go_negative = 0 AND "
                          "credits_posted - debits_posted - debits_pending < 0") == []


async def test_64_senders_from_one_wallet_through_two_replicas_never_overdraw_it(replicated: Replicated) -> None:
    replicas = replicated.replicas("gifts")
    for replica in replicas:
        await replica.wait_serving()
    channels = [grpc.aio.insecure_channel(replica.target) for replica in replicas]
    try:
        live = await _live_with_fans(replicated, channels[0], ["alice"])
        auth = replicated.auth("users/alice")
        # Half the senders on each replica, so the two processes race for the same coins.
        stubs = [gifts_pb2_grpc.GiftServiceStub(channels[index % 2]) for index in range(64)]

        async def send(stub: gifts_pb2_grpc.GiftServiceAsyncStub) -> str:
            try:
                await stub.SendGift(_gift(live), metadata=auth, timeout=60)
            except grpc.aio.AioRpcError as error:
                return str(error_info(error).reason)
            return "SENT"

        outcomes = await asyncio.gather(*(send(stub) for stub in stubs for _ in range(2)))
        assert outcomes.count("SENT") == COINS_PER_PACK // DOUGHNUT
        assert set(outcomes) == {"SENT", "INSUFFICIENT_COINS"}
        for channel in channels:  # both replicas read the same wallet
            wallet = await wallet_pb2_grpc.WalletServiceStub(channel).GetWallet(
                wallet_pb2.GetWalletRequest(name="users/alice/wallet"), metadata=auth)
            assert wallet.wallet.coin_balance == COINS_PER_PACK % DOUGHNUT
        _assert_ledger_balanced(replicated)
    finally:
        for channel in channels:
            await channel.close()


async def test_kill_9_of_one_replica_under_load_loses_nothing_and_the_other_keeps_serving(
        replicated: Replicated) -> None:
    replicas = replicated.replicas("gifts")
    for replica in replicas:
        await replica.wait_serving()
    fans = [f"fan{index}" for index in range(16)]
    acknowledged: dict[str, tuple[str, gifts_pb2.SendGiftRequest, str, float]] = {}
    attempted: set[str] = set()
    killed_at: list[float] = []
    loop = asyncio.get_running_loop()
    async with round_robin(replicas) as channel:
        live = await _live_with_fans(replicated, channel, fans)
        stub = gifts_pb2_grpc.GiftServiceStub(channel)
        stop = asyncio.Event()

        async def fan(user: str) -> None:
            auth = replicated.auth(f"users/{user}")
            while not stop.is_set():
                request = _gift(live, "rose")
                attempted.add(request.request_id)
                try:
                    response = await stub.SendGift(request, metadata=auth, timeout=10)
                except grpc.aio.AioRpcError:
                    continue  # the killed replica's calls fail; round robin moves on
                acknowledged[request.request_id] = (user, request, response.gift_transfer.name, loop.time())

        load = [asyncio.create_task(fan(user)) for user in fans]
        await asyncio.sleep(1.5)
        replicas[0].kill()
        killed_at.append(loop.time())
        await asyncio.sleep(2.0)
        stop.set()
        await asyncio.wait(load, timeout=30)
    assert len(acknowledged) > 50, "the load never got going"
    served_after_kill = [ack for ack in acknowledged.values() if ack[3] > killed_at[0] + 0.5]
    assert len(served_after_kill) > 10, "the surviving replica stopped serving"

    async with grpc.aio.insecure_channel(replicas[1].target) as survivor:
        retry = gifts_pb2_grpc.GiftServiceStub(survivor)
        for request_id, (user, request, name, _) in acknowledged.items():
            again = await retry.SendGift(request, metadata=replicated.auth(f"users/{user}"), timeout=10)
            assert again.gift_transfer.name == name, request_id
    recorded = {str(request_id): count for request_id, count in
                replicated.ledger("SELECT request_id, COUNT(*) FROM gift GROUP BY request_id")}
    assert all(recorded.get(request_id) == 1 for request_id in acknowledged)
    assert set(recorded) <= attempted
    _assert_ledger_balanced(replicated)


# -- shop: a limited drop, two replicas -----------------------------------------------------------

BUYERS = 1_000
UNITS = 100


async def test_1000_buyers_of_100_units_through_two_replicas_make_exactly_100_orders(replicated: Replicated) -> None:
    replicas = replicated.replicas("shop")
    for replica in replicas:
        await replica.wait_serving()
    merchant = replicated.auth("users/acme", Role.MERCHANT)
    channels = [grpc.aio.insecure_channel(replica.target) for replica in replicas]
    try:
        created = await catalog_pb2_grpc.CatalogServiceStub(channels[0]).CreateProduct(
            catalog_pb2.CreateProductRequest(parent="merchants/acme", product_id="sneaker-drop", product=catalog_pb2.Product(
                title="Sneaker drop", price_minor=12_900, currency_code="EUR", type=catalog_pb2.PRODUCT_TYPE_PHYSICAL,
                state=catalog_pb2.PRODUCT_STATE_ACTIVE, vat_rate_bps=1_900)), metadata=merchant)
        variant = created.product.variants[0].name
        await inventory_pb2_grpc.InventoryServiceStub(channels[1]).AdjustInventory(inventory_pb2.AdjustInventoryRequest(
            request_id=str(uuid.uuid4()), name=f"{variant}/inventory", delta=UNITS,
            reason=inventory_pb2.ADJUSTMENT_REASON_RESTOCK), metadata=merchant)
        orders = [orders_pb2_grpc.OrderServiceStub(channel) for channel in channels]
        sold: list[orders_pb2.Order] = []
        refused: list[str] = []

        async def buy(index: int) -> None:
            buyer = f"users/fan{index}"
            request = orders_pb2.CheckoutRequest(
                request_id=str(uuid.uuid4()), buyer=buyer,
                items=[orders_pb2.CheckoutItem(product=created.product.name, quantity=1)],
                payment_method=orders_pb2.PaymentMethod(provider="local", token="tok_debit"),
                expected_total_minor=12_900, currency_code="EUR")
            try:
                response = await orders[index % 2].Checkout(request, metadata=replicated.auth(buyer), timeout=120)
            except grpc.aio.AioRpcError as error:
                assert error.code() is grpc.StatusCode.FAILED_PRECONDITION, error.details()
                refused.append(error_info(error).reason)
                return
            sold.append(response.order)

        await asyncio.gather(*(buy(index) for index in range(BUYERS)))
        assert len(sold) == UNITS
        assert refused == ["OUT_OF_STOCK"] * (BUYERS - UNITS)
        for channel in channels:
            inventory = await inventory_pb2_grpc.InventoryServiceStub(channel).GetInventory(
                inventory_pb2.GetInventoryRequest(name=f"{variant}/inventory"), metadata=merchant)
            assert (inventory.inventory.on_hand, inventory.inventory.available) == (UNITS, 0)
    finally:
        for channel in channels:
            await channel.close()



# -- compliance: the audit log while its sequencer is killed --------------------------------------


def _audit_event(number: int) -> audit_pb2.AuditEvent:
    return audit_pb2.AuditEvent(event_id=str(uuid.uuid4()), actor="services/gifts", action="gifts.SendGift",
                                resource=f"creators/bo/lives/l{number % 5}", outcome=audit_pb2.OUTCOME_SUCCEEDED,
                                trace_id=f"{number:032x}", event_time=timestamp(dt.datetime.now(dt.UTC)),
                                subject_ref="ab" * 32, attributes={"coins": str(number)})


def _signer(replicas: list[ServiceProcess]) -> ServiceProcess:
    """The replica that says it signs the log's checkpoints (its log), waiting a little for one to."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        signing = [replica for replica in replicas
                   if "this replica signs the audit log's checkpoints" in replica.log.read_text()]
        if signing:
            return signing[0]
        time.sleep(0.1)
    raise AssertionError("no replica signs the audit log")


async def test_the_audit_log_stays_consistent_with_every_checkpoint_while_its_sequencer_is_killed(
        replicated: Replicated) -> None:
    replicas = replicated.replicas("compliance", LIMELIGHT_AUDIT_CHECKPOINT_MS="50")
    for replica in replicas:
        await replica.wait_serving()
    sequencer = _signer(replicas)
    survivor = next(replica for replica in replicas if replica is not sequencer)
    service = replicated.auth("services/gifts", Role.SERVICE)
    acknowledged: dict[str, int] = {}
    checkpoints: dict[int, audit_pb2.Checkpoint] = {}
    loop = asyncio.get_running_loop()
    async with round_robin(replicas) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        stop = asyncio.Event()
        counter = iter(range(1_000_000))

        async def appender() -> None:
            while not stop.is_set():
                batch = [_audit_event(next(counter)) for _ in range(3)]
                try:
                    reply = await audit.AppendEvents(audit_pb2.AppendEventsRequest(events=batch), metadata=service,
                                                     timeout=10)
                except grpc.aio.AioRpcError:
                    continue  # the killed replica's calls fail; round robin moves on
                acknowledged.update({appended.event_id: appended.leaf_index for appended in reply.events})

        async def watch_checkpoints() -> None:
            while not stop.is_set():
                try:
                    reply = await audit.GetCheckpoint(audit_pb2.GetCheckpointRequest(), metadata=service, timeout=5)
                except grpc.aio.AioRpcError:
                    continue
                checkpoints[reply.checkpoint.tree_size] = reply.checkpoint
                await asyncio.sleep(0.02)

        load = [asyncio.create_task(appender()) for _ in range(8)] + [asyncio.create_task(watch_checkpoints())]
        await asyncio.sleep(1.5)
        sequencer.kill()
        before_kill = len(acknowledged)
        await asyncio.sleep(2.5)
        stop.set()
        await asyncio.wait(load, timeout=30)
    assert before_kill > 50, "the load never got going"
    assert len(acknowledged) > before_kill + 50, "the surviving replica stopped appending"

    async with grpc.aio.insecure_channel(survivor.target) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        total = len(acknowledged)
        deadline = loop.time() + 15
        while (final := (await audit.GetCheckpoint(audit_pb2.GetCheckpointRequest(), metadata=service)).checkpoint
               ).tree_size < max(acknowledged.values()) + 1:
            assert loop.time() < deadline, "the surviving replica never signed what was appended"
            await asyncio.sleep(0.05)
        key = (await audit.GetPublicKey(audit_pb2.GetPublicKeyRequest(), metadata=service)).verifier_key
        verifier = NoteVerifier.from_key_string(key)
        open_checkpoint(final.signed_note, [verifier])
        assert any(size > 0 for size in checkpoints), "no checkpoint was seen during the run"
        for size, earlier in checkpoints.items():  # every checkpoint anyone saw is a prefix of the final tree
            if size == 0 or size == final.tree_size:
                continue
            open_checkpoint(earlier.signed_note, [verifier])
            proof = await audit.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(
                first_size=size, second_size=final.tree_size), metadata=service)
            verify_consistency(size, final.tree_size, earlier.root_hash, final.root_hash, list(proof.hashes))
        for event_id, leaf_index in list(acknowledged.items())[:: max(1, total // 20)]:
            included = await audit.GetInclusionProof(audit_pb2.GetInclusionProofRequest(
                event_id=event_id, tree_size=final.tree_size), metadata=service)
            assert included.leaf_index == leaf_index
    # Gap-free, one order, each acknowledged event once: the leaf indexes the replicas handed out.
    assert len(set(acknowledged.values())) == total
    with psycopg.connect(replicated.database_url, options="-c search_path=compliance_audit") as connection:
        stored: dict[str, int] = dict(connection.execute("SELECT event_id, leaf_index FROM audit_event").fetchall())
    assert sorted(stored.values()) == list(range(len(stored)))
    assert all(stored[event_id] == leaf_index for event_id, leaf_index in acknowledged.items())
