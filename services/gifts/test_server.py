"""The gifts service end to end: a real grpc.aio server on a loopback port, real channels and tokens."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import datetime as dt
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from google.protobuf import duration_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from limelight.gifts.v1 import (
    gifts_pb2,
    gifts_pb2_grpc,
    live_pb2,
    live_pb2_grpc,
    payouts_pb2,
    payouts_pb2_grpc,
    standing_pb2,
    standing_pb2_grpc,
    wallet_pb2,
    wallet_pb2_grpc,
)

from libs.auth.keys import load_or_create_private_key
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, ServiceDefinition, ServiceRuntime, start_service
from libs.privacy.fields import EphemeralDataKeys, PersonalData
from services.gifts.config import GiftsConfig
from services.gifts.conftest import ON_BOTH_ENGINES, START, MovableClock
from services.gifts.model.fraud import FraudPolicy
from services.gifts.model.payments import LocalPaymentProvider, Purchase
from services.gifts.runner import InProcessRunner
from services.gifts.server import GiftsService

UNLIMITED = GiftsConfig(fraud=FraudPolicy(max_gifts_per_window=10**6, new_account_large_coins=10**9))
PACK = "coins-1000"


@dataclass
class Stubs:
    live: live_pb2_grpc.LiveServiceAsyncStub
    wallet: wallet_pb2_grpc.WalletServiceAsyncStub
    gifts: gifts_pb2_grpc.GiftServiceAsyncStub
    payouts: payouts_pb2_grpc.PayoutServiceAsyncStub
    standing: standing_pb2_grpc.AccountStandingServiceAsyncStub


class Gifts:
    """A running gifts service and what a test needs to talk to it as anyone."""

    def __init__(self, running: RunningService, service: GiftsService, root: Path, clock: MovableClock) -> None:
        self.running = running
        self.service = service
        self.clock = clock
        self._root = root
        self._channels: list[grpc.aio.Channel] = []
        self._provider = LocalPaymentProvider.with_signing_key(
            load_or_create_private_key(root / "keys" / "local-payments-ed25519.pem"))

    def stubs(self) -> Stubs:
        """Stubs on a channel of their own: one more real client."""
        channel = grpc.aio.insecure_channel(self.running.target)
        self._channels.append(channel)
        return Stubs(live_pb2_grpc.LiveServiceStub(channel), wallet_pb2_grpc.WalletServiceStub(channel),
                     gifts_pb2_grpc.GiftServiceStub(channel), payouts_pb2_grpc.PayoutServiceStub(channel),
                     standing_pb2_grpc.AccountStandingServiceStub(channel))

    def auth(self, subject: str, *roles: Role, age: int = 30) -> tuple[tuple[str, str], ...]:
        birth = dt.date(START.year - age, 1, 1)
        claims = TokenClaims(subject, frozenset({Role.VIEWER, *roles}), birth_date=birth)
        token = mint_token(platform_signing_key(self._root), claims, ttl=dt.timedelta(days=3650),
                           now=dt.datetime.now(dt.UTC))
        return (("authorization", f"Bearer {token}"),)

    def receipt(self, user: str, pack_id: str = PACK) -> str:
        pack = self.service.config.catalog.pack(pack_id)
        assert pack is not None
        return self._provider.issue_receipt(Purchase(str(uuid.uuid4()), user, pack_id, pack.coins,
                                                     pack.price_eur_cents, self.clock()))

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    # Steps of a story, as their callers would make them.

    async def admit(self, user: str, **standing: object) -> None:
        request = standing_pb2.UpdateAccountStandingRequest(
            standing=standing_pb2.AccountStanding(name=f"users/{user}/standing", **standing),  # type: ignore[arg-type]
        )
        request.update_mask.paths.extend(standing)
        await self.stubs().standing.UpdateAccountStanding(request, metadata=self.auth("users/ops", Role.ADMIN))

    async def go_live(self, creator: str) -> str:
        await self.admit(creator, follower_count=5_000, identity_verified=True)
        response = await self.stubs().live.StartLive(
            live_pb2.StartLiveRequest(parent=f"creators/{creator}", request_id=str(uuid.uuid4()), title="hello"),
            metadata=self.auth(f"users/{creator}", Role.CREATOR))
        return response.live_session.name

    async def top_up(self, user: str, pack_id: str = PACK) -> wallet_pb2.TopUpCoinsResponse:
        request = wallet_pb2.TopUpCoinsRequest(
            request_id=str(uuid.uuid4()), wallet=f"users/{user}/wallet", coin_pack=f"coinPacks/{pack_id}",
            receipt=wallet_pb2.PaymentReceipt(provider="local", receipt=self.receipt(user, pack_id)))
        response: wallet_pb2.TopUpCoinsResponse = await self.stubs().wallet.TopUpCoins(
            request, metadata=self.auth(f"users/{user}"))
        return response

    def gift_request(self, live: str, gift: str = "doughnut", count: int = 1,
                     request_id: str | None = None) -> gifts_pb2.SendGiftRequest:
        return gifts_pb2.SendGiftRequest(request_id=request_id or str(uuid.uuid4()), live=live, gift=f"gifts/{gift}",
                                         count=count)

    async def coins(self, user: str) -> int:
        response = await self.stubs().wallet.GetWallet(wallet_pb2.GetWalletRequest(name=f"users/{user}/wallet"),
                                                       metadata=self.auth(f"users/{user}"))
        return int(response.wallet.coin_balance)


@pytest.fixture(params=[False, True], ids=["in-process-ledger", "ledger-process"])
async def gifts(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[Gifts]:
    if "database_engine" in request.fixturenames:
        request.getfixturevalue("database_engine")  # before the service opens its stores (and spawns its ledger)
    running, built, clock = await start_gifts(tmp_path, UNLIMITED, ledger_process=request.param)
    handle = Gifts(running, built, tmp_path, clock)
    yield handle
    await handle.close()
    await running.stop(grace=0)


async def start_gifts(root: Path, config: GiftsConfig, *, ledger_process: bool,
                      keys: EphemeralDataKeys | None = None) -> tuple[RunningService, GiftsService, MovableClock]:
    clock = MovableClock()
    services: list[GiftsService] = []

    def build(runtime: ServiceRuntime) -> ServiceDefinition:
        services.append(GiftsService(runtime, config=dataclasses.replace(
            config, ship_audit=False, ledger_in_process=not ledger_process), clock=clock,
            personal=PersonalData(keys or EphemeralDataKeys())))
        return services[0].definition()

    running = await start_service("gifts", build, port=0, data_root=root)
    return running, services[0], clock


def details(error: grpc.aio.AioRpcError) -> tuple[error_details_pb2.ErrorInfo, error_details_pb2.BadRequest | None]:
    status = rpc_status.from_call(error)
    assert status is not None, "no google.rpc.Status details"
    info, bad_request = error_details_pb2.ErrorInfo(), None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
    return info, bad_request


# Personal data ---------------------------------------------------------------------------------


async def test_a_live_title_is_stored_sealed_retried_by_fingerprint_and_unreadable_after_erasure(
    tmp_path: Path,
) -> None:
    keys = EphemeralDataKeys(cache_ttl=0.0)
    running, built, clock = await start_gifts(tmp_path, UNLIMITED, ledger_process=False, keys=keys)
    gifts = Gifts(running, built, tmp_path, clock)
    try:
        await gifts.admit("dora", follower_count=5_000, identity_verified=True)
        title, request_id = "Dora Schmidt live from Köln", str(uuid.uuid4())
        host = gifts.auth("users/dora", Role.CREATOR)

        def start(with_title: str) -> live_pb2.StartLiveRequest:
            return live_pb2.StartLiveRequest(parent="creators/dora", request_id=request_id, title=with_title)

        first = (await gifts.stubs().live.StartLive(start(title), metadata=host)).live_session
        again = (await gifts.stubs().live.StartLive(start(title), metadata=host)).live_session
        assert first.title == title and again == first  # a retry with the same title: the first result
        with pytest.raises(grpc.aio.AioRpcError) as reused:
            await gifts.stubs().live.StartLive(start("another title"), metadata=host)
        info, _ = details(reused.value)
        assert (info.reason, info.metadata["differing_fields"]) == ("REQUEST_ID_REUSED", "title")
        every_byte = b"".join(path.read_bytes() for path in tmp_path.rglob("gifts*") if path.is_file())
        assert "Köln".encode() not in every_byte and b"Dora" not in every_byte

        keys.shred("users/dora")  # what compliance's erasure does to the key
        read = await gifts.stubs().live.GetLiveSession(live_pb2.GetLiveSessionRequest(name=first.name),
                                                      metadata=host)
        assert read.live_session.title == "" and read.live_session.name == first.name
    finally:
        await gifts.close()
        await running.stop(grace=0)


# Money under concurrency and retries ----------------------------------------------------------


async def _gift_from_64_clients(replicas: list[Gifts], live: str) -> list[str]:
    """Two gifts from each of 64 clients at once, the clients spread over `replicas`."""
    auth = replicas[0].auth("users/alice")
    clients = [replicas[index % len(replicas)].stubs().gifts for index in range(64)]

    async def send(client: gifts_pb2_grpc.GiftServiceAsyncStub) -> str:
        try:
            await client.SendGift(replicas[0].gift_request(live), metadata=auth, timeout=30)
        except grpc.aio.AioRpcError as error:
            return str(details(error)[0].reason)
        return "SENT"

    return await asyncio.gather(*(send(client) for client in clients for _ in range(2)))


async def _assert_33_doughnuts_sent(outcomes: list[str], reading: Gifts) -> None:
    assert outcomes.count("SENT") == 33
    assert set(outcomes) == {"SENT", "INSUFFICIENT_COINS"}
    assert await reading.coins("alice") == 10
    carol = await reading.stubs().wallet.GetWallet(wallet_pb2.GetWalletRequest(name="users/carol/wallet"),
                                                   metadata=reading.auth("users/carol"))
    assert carol.wallet.diamonds_on_hold == 33 * 30


@ON_BOTH_ENGINES
async def test_64_clients_gifting_from_one_wallet_at_once_never_overdraw_it(gifts: Gifts) -> None:
    live = await gifts.go_live("carol")
    await gifts.top_up("alice")  # 1,000 coins: 33 doughnuts and 10 coins over
    await _assert_33_doughnuts_sent(await _gift_from_64_clients([gifts], live), gifts)


@pytest.mark.parametrize("database_engine", ["postgres"], indirect=True)
async def test_64_clients_over_two_replicas_on_one_postgres_never_overdraw_one_wallet(
        tmp_path: Path, database_engine: str) -> None:
    """Two gifts services (each with its own ledger writer) over one PostgreSQL: the store's writer
    lock and the balance CHECK hold across processes, not just across one process's threads."""
    replicas: list[Gifts] = []
    try:
        for _ in range(2):  # one data directory, as replicas on one machine share their keys
            running, built, clock = await start_gifts(tmp_path, UNLIMITED, ledger_process=False)
            replicas.append(Gifts(running, built, tmp_path, clock))
        first, second = replicas
        live = await first.go_live("carol")
        await second.top_up("alice")
        await _assert_33_doughnuts_sent(await _gift_from_64_clients(replicas, live), second)
        assert await first.coins("alice") == 10
    finally:
        for replica in replicas:
            await replica.close()
            await replica.running.stop(grace=0)


async def test_a_retry_after_a_client_side_timeout_applies_once(gifts: Gifts) -> None:
    live = await gifts.go_live("carol")
    await gifts.top_up("alice")
    stub, auth = gifts.stubs().gifts, gifts.auth("users/alice")
    request = gifts.gift_request(live)
    # Hold the committer so the first attempt reaches the server but cannot finish in time.
    if not isinstance(gifts.service.runner, InProcessRunner):
        pytest.skip("holds the committer of an in-process ledger")
    gate = asyncio.Event()
    loop = asyncio.get_running_loop()
    held = gifts.service.runner.store.submit(
        lambda uow: asyncio.run_coroutine_threadsafe(gate.wait(), loop).result(5))
    with pytest.raises(grpc.aio.AioRpcError) as timed_out:
        await stub.SendGift(request, metadata=auth, timeout=0.3)
    assert timed_out.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    gate.set()
    await asyncio.wrap_future(held)
    first = await stub.SendGift(request, metadata=auth, timeout=10)
    again = await stub.SendGift(request, metadata=auth, timeout=10)
    assert first == again
    assert first.coin_balance == 970 and await gifts.coins("alice") == 970


async def test_the_same_request_id_with_other_parameters_is_already_exists_with_details(gifts: Gifts) -> None:
    live = await gifts.go_live("carol")
    await gifts.top_up("alice")
    stub, auth = gifts.stubs().gifts, gifts.auth("users/alice")
    request = gifts.gift_request(live)
    await stub.SendGift(request, metadata=auth)
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await stub.SendGift(replace_count(request, 2), metadata=auth)
    assert reused.value.code() is grpc.StatusCode.ALREADY_EXISTS
    info, _ = details(reused.value)
    assert (info.reason, dict(info.metadata)) == ("REQUEST_ID_REUSED", {
        "request_id": request.request_id, "first_operation": "SendGift", "differing_fields": "count"})


def replace_count(request: gifts_pb2.SendGiftRequest, count: int) -> gifts_pb2.SendGiftRequest:
    changed = gifts_pb2.SendGiftRequest()
    changed.CopyFrom(request)
    changed.count = count
    return changed


# The LIVE overlay stream ------------------------------------------------------------------------


async def test_stream_gifts_resumes_from_its_cursor_without_gaps_or_repeats(gifts: Gifts) -> None:
    live = await gifts.go_live("carol")
    await gifts.top_up("alice")
    sender, auth = gifts.stubs().gifts, gifts.auth("users/alice")
    viewer = gifts.stubs().gifts
    seen: list[int] = []
    sent: list[str] = []

    async def send(n: int) -> None:
        for _ in range(n):
            response = await sender.SendGift(gifts.gift_request(live, "rose"), metadata=auth)
            sent.append(response.gift_transfer.name)

    first = viewer.StreamGifts(gifts_pb2.StreamGiftsRequest(live=live), metadata=auth)
    await send(5)
    async for item in first:
        seen.append(item.gift_transfer.sequence)
        if len(seen) == 3:
            break  # the overlay disconnects mid-stream
    first.cancel()
    await send(4)  # gifts keep coming while it is away
    names: list[str] = []
    resumed = viewer.StreamGifts(gifts_pb2.StreamGiftsRequest(live=live, after_sequence=seen[-1]), metadata=auth)
    following = asyncio.create_task(send(3))
    async for item in resumed:
        seen.append(item.gift_transfer.sequence)
        names.append(item.gift_transfer.name)
        if len(seen) == 12:
            break
    resumed.cancel()
    await following
    assert seen == sorted(set(seen)) and len(seen) == 12
    assert names == sent[3:]


async def test_a_stream_numbers_its_session_from_one_and_hides_the_senders_request_ids(gifts: Gifts) -> None:
    lives = [await gifts.go_live("carol"), await gifts.go_live("dave")]
    await gifts.top_up("alice")
    sender, auth = gifts.stubs().gifts, gifts.auth("users/alice")
    for live in (lives[0], lives[1], lives[1], lives[0], lives[1]):
        await sender.SendGift(gifts.gift_request(live, "rose"), metadata=auth)
    stream = gifts.stubs().gifts.StreamGifts(gifts_pb2.StreamGiftsRequest(live=lives[1]),
                                             metadata=gifts.auth("users/viewer"))
    seen = []
    async for item in stream:
        seen.append(item.gift_transfer)
        if len(seen) == 3:
            break
    stream.cancel()
    assert [transfer.sequence for transfer in seen] == [1, 2, 3]
    assert [transfer.request_id for transfer in seen] == ["", "", ""]
    listed = await gifts.stubs().gifts.ListGifts(gifts_pb2.ListGiftsRequest(), metadata=auth)
    assert (listed.rates.platform_fee_basis_points, listed.rates.rounding) == (5_000, "PER_GIFT_FEE_ROUNDED_DOWN")
    assert {gift.name: gift.platform_fee_coins for gift in listed.gifts}["gifts/finger-heart"] == 2


async def test_wallet_names_and_page_tokens_hide_the_ledger_row_ids_and_senders_keys(gifts: Gifts) -> None:
    live = await gifts.go_live("carol")
    await gifts.top_up("alice")
    await gifts.stubs().gifts.SendGift(gifts.gift_request(live), metadata=gifts.auth("users/alice"))
    await gifts.stubs().gifts.SendGift(gifts.gift_request(live), metadata=gifts.auth("users/alice"))
    wallet = gifts.stubs().wallet
    first = await wallet.ListTransactions(wallet_pb2.ListTransactionsRequest(parent="users/carol/wallet", page_size=1),
                                          metadata=gifts.auth("users/carol"))
    (earned,) = first.transactions
    assert re.fullmatch(r"users/carol/wallet/transactions/[0-9a-f]{16}", earned.name)
    assert earned.amount > 0 and earned.request_id == ""  # the sender's key stays the sender's
    _, position, _ = json.loads(base64.urlsafe_b64decode(first.next_page_token + "=" * (-len(first.next_page_token) % 4)))
    assert position == [earned.name.rsplit("/", 1)[1]]  # the public id, not the row
    following = await wallet.ListTransactions(
        wallet_pb2.ListTransactionsRequest(parent="users/carol/wallet", page_size=1, page_token=first.next_page_token),
        metadata=gifts.auth("users/carol"))
    assert [item.name for item in following.transactions] != [earned.name] and following.transactions
    own = await wallet.ListTransactions(wallet_pb2.ListTransactionsRequest(parent="users/alice/wallet"),
                                        metadata=gifts.auth("users/alice"))
    assert all(item.request_id for item in own.transactions)  # a sender sees their own keys


async def test_stream_gifts_ends_when_the_live_ends(gifts: Gifts) -> None:
    live = await gifts.go_live("carol")
    stream = gifts.stubs().gifts.StreamGifts(gifts_pb2.StreamGiftsRequest(live=live), metadata=gifts.auth("users/v"))
    await gifts.stubs().live.EndLive(live_pb2.EndLiveRequest(name=live), metadata=gifts.auth("users/carol"))
    assert [item async for item in stream] == []


# Every RPC answers --------------------------------------------------------------------------------


async def test_a_creator_goes_live_earns_and_cashes_out_through_every_read(gifts: Gifts) -> None:
    stubs, carol = gifts.stubs(), gifts.auth("users/carol", Role.CREATOR)
    eligibility = await stubs.live.GetLiveEligibility(live_pb2.GetLiveEligibilityRequest(creator="creators/carol"),
                                                      metadata=carol)
    assert not eligibility.can_go_live
    live = await gifts.go_live("carol")
    session = await stubs.live.GetLiveSession(live_pb2.GetLiveSessionRequest(name=live), metadata=carol)
    assert session.live_session.state == live_pb2.LIVE_SESSION_STATE_LIVE
    for fan, galaxies in (("alice", 8), ("bob", 4)):
        await gifts.top_up(fan, "coins-10000")
        await stubs.gifts.SendGift(gifts.gift_request(live, "galaxy", galaxies), metadata=gifts.auth(f"users/{fan}"))
    board = await stubs.gifts.GetLiveLeaderboard(gifts_pb2.GetLiveLeaderboardRequest(live=live, page_size=1),
                                                 metadata=carol)
    assert [(e.rank, e.account, e.amount) for e in board.entries] == [(1, "users/alice", 8_000)]
    rest = await stubs.gifts.GetLiveLeaderboard(
        gifts_pb2.GetLiveLeaderboardRequest(live=live, page_token=board.next_page_token), metadata=carol)
    assert [e.account for e in rest.entries] == ["users/bob"] and not rest.next_page_token
    period = await stubs.gifts.GetPeriodLeaderboard(gifts_pb2.GetPeriodLeaderboardRequest(
        kind=gifts_pb2.LEADERBOARD_KIND_TOP_CREATORS, period=gifts_pb2.LEADERBOARD_PERIOD_WEEK), metadata=carol)
    assert [(e.account, e.amount) for e in period.entries] == [("creators/carol", 12_000)]
    summary = await stubs.live.GetLiveSession(live_pb2.GetLiveSessionRequest(name=live), metadata=carol)
    assert (summary.live_session.gift_count, summary.live_session.diamonds_earned) == (2, 12_000)
    listed = await stubs.live.ListLiveSessions(live_pb2.ListLiveSessionsRequest(parent="creators/-"), metadata=carol)
    assert [s.name for s in listed.live_sessions] == [live]

    gifts.clock.advance(gifts.service.config.payouts.diamond_hold)
    payout = await stubs.payouts.RequestPayout(payouts_pb2.RequestPayoutRequest(
        request_id=str(uuid.uuid4()), parent="users/carol", diamonds=10_000, currency_code="EUR",
        payout_method="iban-ref-1"), metadata=carol)
    assert (payout.payout.state, payout.payout.amount_minor) == (payouts_pb2.PAYOUT_STATE_PENDING, 5_000)
    settled = await stubs.payouts.SettlePayout(payouts_pb2.SettlePayoutRequest(
        request_id=str(uuid.uuid4()), name=payout.payout.name, outcome=payouts_pb2.PAYOUT_OUTCOME_PAID,
        provider_reference="psp-42"), metadata=gifts.auth("services/payments", Role.SERVICE))
    assert settled.payout.state == payouts_pb2.PAYOUT_STATE_POSTED
    listed_payouts = await stubs.payouts.ListPayouts(payouts_pb2.ListPayoutsRequest(
        parent="users/carol", state=payouts_pb2.PAYOUT_STATE_POSTED), metadata=carol)
    assert [p.provider_reference for p in listed_payouts.payouts] == ["psp-42"]
    wallet = await stubs.wallet.GetWallet(wallet_pb2.GetWalletRequest(name="users/carol/wallet"), metadata=carol)
    assert (wallet.wallet.diamonds_on_hold, wallet.wallet.diamonds_available) == (0, 2_000)
    statement = await stubs.wallet.ListTransactions(wallet_pb2.ListTransactionsRequest(
        parent="users/carol/wallet", asset=wallet_pb2.ASSET_DIAMONDS, page_size=2), metadata=carol)
    assert [(t.kind, t.state) for t in statement.transactions] == [
        (wallet_pb2.TRANSACTION_KIND_PAYOUT, wallet_pb2.TRANSACTION_STATE_POSTED),
        (wallet_pb2.TRANSACTION_KIND_HOLD_RELEASED, wallet_pb2.TRANSACTION_STATE_POSTED)]
    assert statement.transactions[0].amount == -10_000 and statement.transactions[1].amount in (4_000, 8_000)
    assert statement.next_page_token
    policy = await stubs.payouts.GetPayoutPolicy(payouts_pb2.GetPayoutPolicyRequest())
    assert (policy.diamond_value_micros, policy.creator_share_bps) == (5_000, 5_000)


async def test_a_chargeback_through_the_api_claws_back_the_gift_on_hold(gifts: Gifts) -> None:
    live = await gifts.go_live("carol")
    top_up = await gifts.top_up("alice")
    await gifts.stubs().gifts.SendGift(gifts.gift_request(live, "galaxy"), metadata=gifts.auth("users/alice"))
    reversed_ = await gifts.stubs().wallet.ReverseTopUp(wallet_pb2.ReverseTopUpRequest(
        request_id=str(uuid.uuid4()), top_up=top_up.transaction.name, kind=wallet_pb2.REVERSAL_KIND_CHARGEBACK,
        provider_reference="dispute-7"), metadata=gifts.auth("services/payments", Role.SERVICE))
    assert (reversed_.coins_reversed, reversed_.diamonds_reversed, reversed_.unrecovered_coins) == (1_000, 1_000, 0)
    assert {t.kind for t in reversed_.transactions} == {wallet_pb2.TRANSACTION_KIND_REVERSAL}


# Refusals and malformed input --------------------------------------------------------------------


async def expect(call: object, code: grpc.StatusCode, reason: str | None = None, field: str | None = None) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await call  # type: ignore[misc]
    assert refused.value.code() is code, refused.value.details()
    info, bad_request = details(refused.value)
    if reason is not None:
        assert info.reason == reason, dict(info.metadata)
    if field is not None:
        assert bad_request is not None and field in [v.field for v in bad_request.field_violations]


async def test_each_refusal_has_its_status_and_reason(gifts: Gifts) -> None:
    stubs = gifts.stubs()
    live = await gifts.go_live("carol")
    await gifts.top_up("alice", "coins-100")
    alice, minor = gifts.auth("users/alice"), gifts.auth("users/kid", age=16)
    send = stubs.gifts.SendGift
    await expect(send(gifts.gift_request(live, "galaxy"), metadata=alice),
                 grpc.StatusCode.FAILED_PRECONDITION, "INSUFFICIENT_COINS")
    await expect(send(gifts.gift_request(live), metadata=minor), grpc.StatusCode.PERMISSION_DENIED, "SENDER_UNDER_18")
    await expect(send(gifts.gift_request(live), metadata=gifts.auth("users/carol")),
                 grpc.StatusCode.FAILED_PRECONDITION, "SELF_GIFTING")
    await expect(send(gifts.gift_request(live.replace("carol", "dave")), metadata=alice),
                 grpc.StatusCode.NOT_FOUND, "LIVE_NOT_FOUND")
    await expect(send(gifts.gift_request(live, "unicorn"), metadata=alice),
                 grpc.StatusCode.NOT_FOUND, "GIFT_NOT_IN_CATALOG")
    await expect(send(gifts.gift_request(live)), grpc.StatusCode.UNAUTHENTICATED, "TOKEN_MISSING")
    top_up_minor = wallet_pb2.TopUpCoinsRequest(
        request_id=str(uuid.uuid4()), wallet="users/kid/wallet", coin_pack=f"coinPacks/{PACK}",
        receipt=wallet_pb2.PaymentReceipt(provider="local", receipt=gifts.receipt("kid")))
    await expect(stubs.wallet.TopUpCoins(top_up_minor, metadata=minor),
                 grpc.StatusCode.PERMISSION_DENIED, "BUYER_UNDER_18")
    forged = replace_receipt(top_up_minor, "users/alice/wallet", gifts.receipt("alice")[:-4] + "AAAA")
    await expect(stubs.wallet.TopUpCoins(forged, metadata=alice), grpc.StatusCode.FAILED_PRECONDITION,
                 "RECEIPT_REJECTED")
    await expect(stubs.wallet.GetWallet(wallet_pb2.GetWalletRequest(name="users/carol/wallet"), metadata=alice),
                 grpc.StatusCode.PERMISSION_DENIED, "NOT_OWNER")
    await expect(stubs.live.StartLive(live_pb2.StartLiveRequest(
        parent="creators/kid", request_id=str(uuid.uuid4()), title="t"), metadata=minor),
        grpc.StatusCode.PERMISSION_DENIED, "CREATOR_UNDER_18")
    await expect(stubs.live.StartLive(live_pb2.StartLiveRequest(
        parent="creators/alice", request_id=str(uuid.uuid4()), title="t"), metadata=alice),
        grpc.StatusCode.FAILED_PRECONDITION, "TOO_FEW_FOLLOWERS")
    await expect(stubs.gifts.ResolveHeldGift(gifts_pb2.ResolveHeldGiftRequest(
        request_id=str(uuid.uuid4()), name=f"{live}/giftTransfers/x", reason="FRAUD",
        decision=gifts_pb2.HELD_GIFT_DECISION_VOID), metadata=alice), grpc.StatusCode.PERMISSION_DENIED,
        "ROLE_REQUIRED")
    await expect(stubs.payouts.RequestPayout(payouts_pb2.RequestPayoutRequest(
        request_id=str(uuid.uuid4()), parent="users/carol", diamonds=10_000, currency_code="EUR",
        payout_method="m"), metadata=gifts.auth("users/carol")), grpc.StatusCode.FAILED_PRECONDITION,
        "INSUFFICIENT_AVAILABLE_DIAMONDS")
    await expect(stubs.payouts.RequestPayout(payouts_pb2.RequestPayoutRequest(
        request_id=str(uuid.uuid4()), parent="users/carol", diamonds=2_000, currency_code="EUR",
        payout_method="m"), metadata=gifts.auth("users/carol")), grpc.StatusCode.FAILED_PRECONDITION,
        "BELOW_PAYOUT_MINIMUM")


def replace_receipt(request: wallet_pb2.TopUpCoinsRequest, wallet: str, receipt: str) -> wallet_pb2.TopUpCoinsRequest:
    changed = wallet_pb2.TopUpCoinsRequest()
    changed.CopyFrom(request)
    changed.wallet = wallet
    changed.receipt.receipt = receipt
    return changed


@pytest.mark.parametrize("request_message, field", [
    (gifts_pb2.SendGiftRequest(request_id="not-a-uuid", live="creators/c/lives/l", gift="gifts/rose", count=1),
     "request_id"),
    (gifts_pb2.SendGiftRequest(request_id=str(uuid.uuid4()), live="lives/l", gift="gifts/rose", count=1), "live"),
    (gifts_pb2.SendGiftRequest(request_id=str(uuid.uuid4()), live="creators/c/lives/l", gift="gifts/rose",
                               count=0), "count"),
    (gifts_pb2.SendGiftRequest(request_id=str(uuid.uuid4()), live="creators/c/lives/l", gift="gifts/rose",
                               count=10_001), "count"),
    (gifts_pb2.SendGiftRequest(request_id=str(uuid.uuid4()), live="creators/c/lives/l", gift="Rose", count=1),
     "gift"),
])
async def test_malformed_gifts_are_invalid_argument_naming_the_field(
        gifts: Gifts, request_message: gifts_pb2.SendGiftRequest, field: str) -> None:
    await expect(gifts.stubs().gifts.SendGift(request_message, metadata=gifts.auth("users/alice")),
                 grpc.StatusCode.INVALID_ARGUMENT, field=field)


async def test_malformed_inputs_elsewhere_are_invalid_argument_naming_the_field(gifts: Gifts) -> None:
    stubs, carol = gifts.stubs(), gifts.auth("users/carol")
    too_short = live_pb2.StartLiveRequest(parent="creators/carol", request_id=str(uuid.uuid4()), title="t",
                                          max_duration=duration_pb2.Duration(seconds=5))
    await expect(stubs.live.StartLive(too_short, metadata=carol), grpc.StatusCode.INVALID_ARGUMENT,
                 field="max_duration")
    await expect(stubs.payouts.RequestPayout(payouts_pb2.RequestPayoutRequest(
        request_id=str(uuid.uuid4()), parent="users/carol", diamonds=10_001, currency_code="EUR", payout_method="m"),
        metadata=carol), grpc.StatusCode.INVALID_ARGUMENT, field="diamonds")
    await expect(stubs.wallet.ListTransactions(wallet_pb2.ListTransactionsRequest(
        parent="users/carol/wallet", page_token="bogus"), metadata=carol), grpc.StatusCode.INVALID_ARGUMENT,
        field="page_token")
    await expect(stubs.payouts.SettlePayout(payouts_pb2.SettlePayoutRequest(
        request_id=str(uuid.uuid4()), name="users/carol/payouts/p", outcome=payouts_pb2.PAYOUT_OUTCOME_FAILED,
        provider_reference="x"), metadata=gifts.auth("services/payments", Role.SERVICE)),
        grpc.StatusCode.INVALID_ARGUMENT)


async def test_refusals_and_denials_land_in_the_audit_outbox(gifts: Gifts) -> None:
    live = await gifts.go_live("carol")
    with pytest.raises(grpc.aio.AioRpcError):
        await gifts.stubs().gifts.SendGift(gifts.gift_request(live), metadata=gifts.auth("users/kid", age=15))
    with pytest.raises(grpc.aio.AioRpcError):
        await gifts.stubs().gifts.ResolveHeldGift(gifts_pb2.ResolveHeldGiftRequest(
            request_id=str(uuid.uuid4()), name=f"{live}/giftTransfers/x", reason="FRAUD",
            decision=gifts_pb2.HELD_GIFT_DECISION_VOID), metadata=gifts.auth("users/mallory"))
    with pytest.raises(grpc.aio.AioRpcError):  # an ownership check in a handler
        await gifts.stubs().wallet.GetWallet(wallet_pb2.GetWalletRequest(name="users/carol/wallet"),
                                             metadata=gifts.auth("users/mallory"))
    traced = await asyncio.to_thread(gifts.service.outbox.pending, 100)
    events = [t.event for t in traced]
    outcomes = [(e.action, str(e.outcome), e.reason) for e in events]
    assert outcomes.count(("gifts.SendGift", "rejected", "SENDER_UNDER_18")) == 1  # once, though the kit reports it too
    assert outcomes.count(("gifts.ResolveHeldGift", "denied", "ROLE_REQUIRED")) == 1
    # A refusal names the resource it was refused on, as the API names it.
    assert [(e.resource, e.actor) for e in events if e.reason == "NOT_OWNER"] == [("users/carol/wallet", "users/mallory")]
    assert [e.resource for e in events if e.reason == "SENDER_UNDER_18"] == [live]
    refused = [t for t in traced if t.event.action in ("gifts.SendGift", "gifts.ResolveHeldGift")]
    assert all(len(t.event.trace_id) == 32 and t.trace_context.get("traceparent") for t in refused)

