"""Gifts over gRPC: LiveService, WalletService, GiftService, PayoutService, AccountStandingService.

Each handler only translates: request -> command -> use case (run in the store's next durable
batch) -> response; reads run on the store's reader off the event loop. Who may call what is
the kit's `AccessPolicy` plus ownership checks here (a wallet is read by its owner, an
operator or a service). The contract is in protos/limelight/gifts/v1/.

The use cases run in a ledger process of the service's own (`engine.LedgerProcess`, which
says why); reads run here, beside it. Besides the RPCs the service runs a sweep that expires
overdue pending transfers, releases matured diamonds and ends overdue LIVEs, and the shared
audit client, which ships the ledger's audit outbox to compliance's AuditService (events
wait in the outbox while it is unreachable).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import os
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any, TypeVar

import grpc
from limelight.compliance.v1 import audit_pb2_grpc
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

from libs.audit.client import AuditClient, compliance_appender
from libs.audit.pseudonyms import Pseudonymizer
from libs.audit.spool import AuditSpool
from libs.auth.principal import Principal, Role
from libs.clock import Clock, utc_now
from libs.errors import DomainError, InvalidArgument, NotFound, PermissionDenied
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.context import current_principal
from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition
from libs.kit.telemetry import current_ids
from services.gifts import messages
from services.gifts.audit import AuditEvent, Outcome
from services.gifts.audit_outbox import GiftsAuditOutbox
from services.gifts.bootstrap import GiftsApp
from services.gifts.config import GiftsConfig
from services.gifts.eligibility import gifts_barred_reason, live_requirements
from services.gifts.engine import InProcessLedger, LedgerProcess, Operation, local_payment_provider, record_audit, sweep
from services.gifts.gifting import (
    SYSTEM_ACTOR,
    EndLive,
    Gifting,
    RequestPayout,
    ReversalKind,
    ReverseTopUp,
    ReviewHeldGift,
    SendGift,
    SettlePayout,
    StartLive,
    TopUpCoins,
    UpdateAccountFacts,
    epoch_us,
)
from services.gifts.live import LiveState
from services.gifts.store import GiftsReader, GiftsStore
from services.gifts.views import Party, decode_cursor, decode_int_cursor, encode_cursor, page_of, page_size

logger = logging.getLogger(__name__)

PACKAGE = "limelight.gifts.v1"
LIVE = f"{PACKAGE}.LiveService"
WALLET = f"{PACKAGE}.WalletService"
GIFT = f"{PACKAGE}.GiftService"
PAYOUT = f"{PACKAGE}.PayoutService"
STANDING = f"{PACKAGE}.AccountStandingService"

OPERATORS = frozenset({Role.ADMIN})
SERVICES_AND_OPERATORS = frozenset({Role.ADMIN, Role.SERVICE})
LEADERBOARD_PAGE = 10
SWEEP_INTERVAL_SECONDS = 1.0
STREAM_RECHECK_SECONDS = 1.0
FEED_BATCH = 500

R = TypeVar("R")
C = TypeVar("C")

ACCESS = AccessPolicy(
    public=frozenset({f"/{GIFT}/ListGifts", f"/{WALLET}/ListCoinPacks", f"/{PAYOUT}/GetPayoutPolicy"}),
    roles={
        **method_paths(GIFT, {"ResolveHeldGift": OPERATORS}),
        **method_paths(WALLET, {"ReverseTopUp": SERVICES_AND_OPERATORS}),
        **method_paths(PAYOUT, {"SettlePayout": SERVICES_AND_OPERATORS}),
        **method_paths(STANDING, {"UpdateAccountStanding": OPERATORS}),
    },
)


def _acting(principal: Principal) -> Principal:
    """The user a call acts for: a service acting for a user speaks with the user's age and id."""
    return principal.on_behalf_of or principal


def _require_self_or_staff(user_id: str) -> Principal:
    principal = current_principal()
    if _acting(principal).user_id != user_id and not principal.has_role(*SERVICES_AND_OPERATORS):
        raise PermissionDenied("this belongs to another user", reason="NOT_OWNER",
                               metadata={"owner": f"users/{user_id}"})
    return principal


def _require_self(user_id: str, *, field: str) -> Principal:
    principal = _acting(current_principal())
    if principal.user_id != user_id:
        raise PermissionDenied(f"{field} must name the caller", reason="NOT_OWNER", metadata={"field": field})
    return principal


class LiveSignals:
    """Wakes StreamGifts subscribers when their LIVE gets gifts or ends.

    Fed by the store's live listener on the committer thread; a subscriber takes its waiter
    before reading, so a commit between its read and its wait still wakes it.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def on_commit(self, live_ids: frozenset[str]) -> None:
        self._loop.call_soon_threadsafe(self._wake, live_ids)

    def _wake(self, live_ids: frozenset[str]) -> None:
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


class GiftsService:
    """The gifts service wired for one process: ledger, reader, servicers, background loops.

    `ledger_process=False` runs the use cases on this process's own group committer instead
    (tests that reach into the store, and small deployments).
    """

    def __init__(self, runtime: ServiceRuntime, *, config: GiftsConfig | None = None,
                 clock: Clock = utc_now, sweep_interval: float = SWEEP_INTERVAL_SECONDS,
                 ship_audit: bool = True, ledger_process: bool = True) -> None:
        self.config = config or GiftsConfig()
        self.clock = clock
        self.signals = LiveSignals(asyncio.get_running_loop())
        self.ledger: LedgerProcess | InProcessLedger
        self._reader: GiftsReader | None = None
        if ledger_process:
            self.ledger = LedgerProcess(runtime.data_root, self.config, on_lives_touched=self.signals.on_commit)
        else:
            provider = local_payment_provider(runtime.data_root)
            store = GiftsStore(root=runtime.data_root)
            store.add_live_listener(self.signals.on_commit)
            self.ledger = InProcessLedger(GiftsApp(store=store, gifting=Gifting(
                self.config, clock=clock, payments={provider.name: provider}), new_request_id=_new_request_id))
            self._reader = store
        self._runtime = runtime
        self._ship_audit = ship_audit
        self._audit: AuditClient | None = None
        self._audited_refusals: weakref.WeakSet[DomainError] = weakref.WeakSet()
        self._sweep_interval = sweep_interval
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def reader(self) -> GiftsReader:
        assert self._reader is not None, "the service has not started"
        return self._reader

    def now_us(self) -> int:
        return epoch_us(self.clock())

    async def run(self, operation: Operation[C, R], command: C) -> R:
        """An operation in the ledger's next durable batch, stamped with this call's trace and time."""
        try:
            return await self.ledger.run(operation, command, trace_id=current_ids().trace_id, now_us=self.now_us())
        except DomainError as refusal:
            self._audited_refusals.add(refusal)  # the ledger wrote its audit event with the refusal
            raise

    async def read(self, query: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        return await asyncio.to_thread(query, *args, **kwargs)

    def definition(self) -> ServiceDefinition:
        return package_definition(
            PACKAGE,
            {LIVE: LiveServicer(self), WALLET: WalletServicer(self), GIFT: GiftServicer(self),
             PAYOUT: PayoutServicer(self), STANDING: AccountStandingServicer(self)},
            policy=ACCESS, on_start=self._start, on_stop=self._stop, on_denied=self._record_denial,
        )

    async def _start(self) -> None:
        root = self._runtime.data_root
        if isinstance(self.ledger, LedgerProcess):
            await self.ledger.start()  # opens and migrates the database before anyone reads it
            self._reader = GiftsReader.of_service(root)
        self._tasks = [asyncio.create_task(self._every(self._sweep_interval, self._sweep), name="gifts-sweep")]
        if self._ship_audit:
            # The shared client ships the ledger's own outbox; its spool stays empty.
            self._audit = AuditClient(
                service=self._runtime.name, spool=AuditSpool.open(self._runtime.name, root),
                append=compliance_appender(self._runtime.clients.stub("compliance", audit_pb2_grpc.AuditServiceStub)),
                pseudonymizer=Pseudonymizer.for_deployment(root), clock=self.clock,
                outbox=GiftsAuditOutbox(self.reader, Pseudonymizer.for_deployment(root)))
            await self._audit.start()

    async def _stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._audit is not None:
            await self._audit.stop()
        if isinstance(self.ledger, LedgerProcess):
            await self.ledger.stop()
            if self._reader is not None:
                self._reader.close()
        else:
            await asyncio.to_thread(self.ledger.app.close)

    async def _sweep(self) -> None:
        await self.run(sweep, _new_request_id())

    @staticmethod
    async def _every(interval: float, step: Callable[[], Coroutine[Any, Any, None]]) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await step()
            except Exception:  # one failed pass must not end the loop; the next one retries
                logger.exception("gifts background step failed")

    async def _record_denial(self, method: str, principal: Principal | None, error: DomainError) -> None:
        """Refusals the ledger did not see (no token, a bad one, a missing role, another's wallet)
        are audited like the rest; the kit reports the ledger's own PERMISSION_DENIED too."""
        if error in self._audited_refusals:
            return
        event = AuditEvent(method.rsplit("/", 1)[-1], principal.subject if principal else SYSTEM_ACTOR,
                           Outcome.DENIED, "", method, self.now_us(), error.reason,
                           {**error.metadata, "caller": principal.subject if principal else "anonymous"})
        await self.run(record_audit, event)


def _new_request_id() -> str:
    return str(uuid.uuid4())


def build(runtime: ServiceRuntime) -> ServiceDefinition:
    """`LIMELIGHT_GIFTS_LEDGER=in-process` keeps the committer in this process (one core);
    `LIMELIGHT_GIFTS_AUDIT_SHIPPING=off` leaves audit events in the outbox, durable, until
    shipping is turned on again (while compliance is down for maintenance, say)."""
    in_process = os.environ.get("LIMELIGHT_GIFTS_LEDGER", "process") == "in-process"
    shipping = os.environ.get("LIMELIGHT_GIFTS_AUDIT_SHIPPING", "on") != "off"
    return GiftsService(runtime, ledger_process=not in_process, ship_audit=shipping).definition()


# Servicers -------------------------------------------------------------------------------------


class LiveServicer(live_pb2_grpc.LiveServiceServicer):
    def __init__(self, service: GiftsService) -> None:
        self._service = service

    async def _session_named(self, name: str, field: str = "name") -> tuple[str, str]:
        creator, live_id = messages.name_parts(name, field=field, shape=messages.LIVE_NAME)
        session = await self._service.read(self._service.reader.live, live_id)
        if session is None or session.host != creator:
            raise NotFound(f"no LIVE session {name}", resource_name=name, reason="LIVE_NOT_FOUND")
        return creator, live_id

    async def _summary(self, live_id: str) -> live_pb2.LiveSession:
        summary = await self._service.read(self._service.reader.live_summary, live_id)
        assert summary is not None
        return messages.live_session(summary.session, self._service.now_us(), gift_count=summary.gift_count,
                                     diamonds_earned=summary.diamonds_earned)

    async def StartLive(self, request: live_pb2.StartLiveRequest,
                        context: grpc.aio.ServicerContext) -> live_pb2.StartLiveResponse:
        (creator,) = messages.name_parts(request.parent, field="parent", shape=messages.CREATOR_NAME)
        principal = _require_self(creator, field="parent")
        max_duration = request.max_duration.ToTimedelta() if request.HasField("max_duration") else None
        session = await self._service.run(Gifting.start_live,
                                          StartLive(principal, request.request_id, request.title, max_duration))
        return live_pb2.StartLiveResponse(live_session=messages.live_session(session, self._service.now_us()))

    async def EndLive(self, request: live_pb2.EndLiveRequest,
                      context: grpc.aio.ServicerContext) -> live_pb2.EndLiveResponse:
        _, live_id = await self._session_named(request.name)
        await self._service.run(Gifting.end_live, EndLive(_acting(current_principal()), live_id))
        return live_pb2.EndLiveResponse(live_session=await self._summary(live_id))

    async def GetLiveSession(self, request: live_pb2.GetLiveSessionRequest,
                             context: grpc.aio.ServicerContext) -> live_pb2.GetLiveSessionResponse:
        _, live_id = await self._session_named(request.name)
        return live_pb2.GetLiveSessionResponse(live_session=await self._summary(live_id))

    async def ListLiveSessions(self, request: live_pb2.ListLiveSessionsRequest,
                               context: grpc.aio.ServicerContext) -> live_pb2.ListLiveSessionsResponse:
        (creator,) = messages.name_parts(request.parent, field="parent", shape=messages.CREATOR_NAME)
        host = None if creator == "-" else creator
        state = {live_pb2.LIVE_SESSION_STATE_LIVE: LiveState.LIVE,
                 live_pb2.LIVE_SESSION_STATE_ENDED: LiveState.ENDED}.get(request.state)
        scope = f"{request.parent}|{request.state}"
        limit = page_size(request.page_size)
        now_us = self._service.now_us()
        sessions = await self._service.read(self._service.reader.lives, host=host, limit=limit + 1, state=state,
                                            before_live_id=decode_cursor(request.page_token, scope), now_us=now_us)
        response = live_pb2.ListLiveSessionsResponse(
            live_sessions=[messages.live_session(session, now_us) for session in sessions[:limit]])
        if len(sessions) > limit:
            response.next_page_token = encode_cursor(scope, sessions[limit - 1].live_id)
        return response

    async def GetLiveEligibility(self, request: live_pb2.GetLiveEligibilityRequest,
                                 context: grpc.aio.ServicerContext) -> live_pb2.GetLiveEligibilityResponse:
        (creator,) = messages.name_parts(request.creator, field="creator", shape=messages.CREATOR_NAME)
        principal = _require_self_or_staff(creator)
        standing = await self._service.read(self._service.reader.account_standing, creator)
        is_adult = (_acting(principal).is_adult_on(self._service.clock().date())
                    if _acting(principal).user_id == creator else None)
        requirements = live_requirements(standing.facts, min_followers=self._service.config.live.min_followers,
                                         is_adult=is_adult)
        barred = gifts_barred_reason(standing.facts)
        can_go_live = all(requirement.met for requirement in requirements)
        checks = [live_pb2.EligibilityCheck(requirement=r.reason, met=r.met, detail=r.detail) for r in requirements]
        checks.append(live_pb2.EligibilityCheck(requirement="GIFTS_DISABLED", met=not barred,
                                                detail=f"why={barred or 'NONE'}"))
        return live_pb2.GetLiveEligibilityResponse(can_go_live=can_go_live,
                                                   can_receive_gifts=can_go_live and not barred, checks=checks)


class WalletServicer(wallet_pb2_grpc.WalletServiceServicer):
    def __init__(self, service: GiftsService) -> None:
        self._service = service

    async def GetWallet(self, request: wallet_pb2.GetWalletRequest,
                        context: grpc.aio.ServicerContext) -> wallet_pb2.GetWalletResponse:
        (user,) = messages.name_parts(request.name, field="name", shape=messages.WALLET_NAME)
        _require_self_or_staff(user)
        return wallet_pb2.GetWalletResponse(
            wallet=messages.wallet(await self._service.read(self._service.reader.wallet, user)))

    async def ListTransactions(self, request: wallet_pb2.ListTransactionsRequest,
                               context: grpc.aio.ServicerContext) -> wallet_pb2.ListTransactionsResponse:
        (user,) = messages.name_parts(request.parent, field="parent", shape=messages.WALLET_NAME)
        _require_self_or_staff(user)
        scope = f"{request.parent}|{request.kind}|{request.asset}"
        limit = page_size(request.page_size, default=100)
        lines = await self._service.read(
            self._service.reader.statement, user, before_id=decode_int_cursor(request.page_token, scope),
            limit=limit + 1, codes=messages.TRANSACTION_KINDS.get(request.kind),
            purposes=messages.ASSETS.get(request.asset, messages.ASSETS[wallet_pb2.ASSET_COINS]
                                         | messages.ASSETS[wallet_pb2.ASSET_DIAMONDS]))
        response = wallet_pb2.ListTransactionsResponse(
            transactions=[messages.transaction(user, line) for line in lines[:limit]])
        if len(lines) > limit:
            response.next_page_token = encode_cursor(scope, lines[limit - 1].entry.transfer_id)
        return response

    async def ListCoinPacks(self, request: wallet_pb2.ListCoinPacksRequest,
                            context: grpc.aio.ServicerContext) -> wallet_pb2.ListCoinPacksResponse:
        if request.currency_code not in ("", "EUR"):
            raise InvalidArgument.for_field("currency_code", "coin packs are priced in EUR",
                                            reason="CURRENCY_NOT_SUPPORTED")
        packs, following = page_of(self._service.config.catalog.packs, requested_size=request.page_size,
                                   page_token=request.page_token, scope="coinPacks")
        return wallet_pb2.ListCoinPacksResponse(coin_packs=[messages.coin_pack(pack) for pack in packs],
                                                next_page_token=following)

    async def TopUpCoins(self, request: wallet_pb2.TopUpCoinsRequest,
                         context: grpc.aio.ServicerContext) -> wallet_pb2.TopUpCoinsResponse:
        (user,) = messages.name_parts(request.wallet, field="wallet", shape=messages.WALLET_NAME)
        principal = _require_self(user, field="wallet")
        (pack_id,) = messages.name_parts(request.coin_pack, field="coin_pack", shape=("coinPacks", ""))
        command = TopUpCoins(principal, request.request_id, pack_id, request.receipt.provider,
                             request.receipt.receipt)
        result = await self._service.run(Gifting.top_up, command)
        wallet = await self._service.read(self._service.reader.wallet, user)
        return wallet_pb2.TopUpCoinsResponse(
            transaction=wallet_pb2.Transaction(
                name=f"users/{user}/wallet/transactions/{result.coins_transfer_id}",
                kind=wallet_pb2.TRANSACTION_KIND_TOP_UP, state=wallet_pb2.TRANSACTION_STATE_POSTED,
                asset=wallet_pb2.ASSET_COINS, amount=result.coins, request_id=request.request_id,
                counterparty="platform/accounts/coin-issuance", create_time=messages.timestamp(result.created_at_us)),
            wallet=messages.wallet(wallet))

    async def ReverseTopUp(self, request: wallet_pb2.ReverseTopUpRequest,
                           context: grpc.aio.ServicerContext) -> wallet_pb2.ReverseTopUpResponse:
        user, entry = messages.name_parts(request.top_up, field="top_up", shape=messages.TRANSACTION_NAME)
        top_up_id = await self._service.read(self._service.reader.top_up_of_entry, user, int(entry)) \
            if entry.isdigit() else None
        if top_up_id is None:
            raise NotFound(f"no top-up {request.top_up}", resource_name=request.top_up, reason="TOP_UP_NOT_FOUND")
        kind = ReversalKind.REFUND if request.kind == wallet_pb2.REVERSAL_KIND_REFUND else ReversalKind.CHARGEBACK
        command = ReverseTopUp(_acting(current_principal()), request.request_id, top_up_id, kind,
                               request.provider_reference)
        result = await self._service.run(Gifting.reverse_top_up, command)
        lines = await self._service.read(self._service.reader.request_statement, user, request.request_id)
        return wallet_pb2.ReverseTopUpResponse(
            transactions=[messages.transaction(user, line) for line in lines],
            coins_reversed=result.coins_clawed_back, diamonds_reversed=result.diamonds_clawed_back,
            unrecovered_coins=result.coins_unrecovered)


class GiftServicer(gifts_pb2_grpc.GiftServiceServicer):
    def __init__(self, service: GiftsService) -> None:
        self._service = service

    async def ListGifts(self, request: gifts_pb2.ListGiftsRequest,
                        context: grpc.aio.ServicerContext) -> gifts_pb2.ListGiftsResponse:
        gifts, following = page_of(self._service.config.catalog.gifts, requested_size=request.page_size,
                                   page_token=request.page_token, scope="gifts", default_size=100)
        rates = self._service.config.rates
        return gifts_pb2.ListGiftsResponse(gifts=[messages.catalog_gift(gift, rates) for gift in gifts],
                                           next_page_token=following)

    async def SendGift(self, request: gifts_pb2.SendGiftRequest,
                       context: grpc.aio.ServicerContext) -> gifts_pb2.SendGiftResponse:
        creator, live_id = messages.name_parts(request.live, field="live", shape=messages.LIVE_NAME)
        (gift_id,) = messages.name_parts(request.gift, field="gift", shape=("gifts", ""))
        sender = _acting(current_principal())
        result = await self._service.run(Gifting.send_gift,
                                         SendGift(sender, request.request_id, live_id, gift_id, request.count, creator))
        transfer = messages.gift_transfer_from_result(result, request.request_id)
        transfer.sender = sender.subject
        return gifts_pb2.SendGiftResponse(gift_transfer=transfer, coin_balance=result.coins_available)

    async def ResolveHeldGift(self, request: gifts_pb2.ResolveHeldGiftRequest,
                              context: grpc.aio.ServicerContext) -> gifts_pb2.ResolveHeldGiftResponse:
        _, _, gift_id = messages.name_parts(request.name, field="name", shape=messages.GIFT_TRANSFER_NAME)
        command = ReviewHeldGift(_acting(current_principal()), request.request_id, gift_id,
                                 request.decision == gifts_pb2.HELD_GIFT_DECISION_RELEASE, request.reason)
        result = await self._service.run(Gifting.review_held_gift, command)
        return gifts_pb2.ResolveHeldGiftResponse(
            gift_transfer=messages.gift_transfer_from_result(result, request.request_id))

    async def StreamGifts(self, request: gifts_pb2.StreamGiftsRequest,
                          context: grpc.aio.ServicerContext) -> AsyncIterator[gifts_pb2.StreamGiftsResponse]:
        creator, live_id = messages.name_parts(request.live, field="live", shape=messages.LIVE_NAME)
        store, signals = self._service.reader, self._service.signals
        after = request.after_sequence
        while True:
            waiter = signals.waiter(live_id)
            try:
                session = await self._service.read(store.live, live_id)
                if session is None or session.host != creator:
                    raise NotFound(f"no LIVE session {request.live}", resource_name=request.live,
                                   reason="LIVE_NOT_FOUND")
                items = await self._service.read(store.feed, live_id, after_sequence=after, limit=FEED_BATCH)
                for item in items:
                    yield gifts_pb2.StreamGiftsResponse(gift_transfer=messages.gift_transfer_from_feed(item))
                    after = item.sequence
                if items:
                    continue
                if session.state_at(self._service.now_us()) is LiveState.ENDED:
                    return  # read after the end was known: nothing can follow
                # Woken by a commit for this LIVE; the timeout notices an end by the clock alone.
                await asyncio.wait([waiter], timeout=STREAM_RECHECK_SECONDS)
            finally:
                signals.forget(live_id, waiter)

    async def GetLiveLeaderboard(self, request: gifts_pb2.GetLiveLeaderboardRequest,
                                 context: grpc.aio.ServicerContext) -> gifts_pb2.GetLiveLeaderboardResponse:
        creator, live_id = messages.name_parts(request.live, field="live", shape=messages.LIVE_NAME)
        session = await self._service.read(self._service.reader.live, live_id)
        if session is None or session.host != creator:
            raise NotFound(f"no LIVE session {request.live}", resource_name=request.live, reason="LIVE_NOT_FOUND")
        offset = decode_int_cursor(request.page_token, request.live) or 0
        limit = page_size(request.page_size, default=LEADERBOARD_PAGE)
        entries = await self._service.read(self._service.reader.leaderboard, party=Party.GIFTER, limit=limit + 1,
                                           offset=offset, live_id=live_id)
        response = gifts_pb2.GetLiveLeaderboardResponse(
            entries=[messages.leaderboard_entry(entry, Party.GIFTER) for entry in entries[:limit]])
        if len(entries) > limit:
            response.next_page_token = encode_cursor(request.live, offset + limit)
        return response

    async def GetPeriodLeaderboard(self, request: gifts_pb2.GetPeriodLeaderboardRequest,
                                   context: grpc.aio.ServicerContext) -> gifts_pb2.GetPeriodLeaderboardResponse:
        party = messages.PARTIES[request.kind]
        moment = request.period_time.ToDatetime(dt.UTC) if request.HasField("period_time") else self._service.clock()
        start, end = period_bounds(moment, request.period)
        creator = messages.name_parts(request.creator, field="creator", shape=messages.CREATOR_NAME)[0] \
            if request.creator else None
        scope = f"{request.kind}|{request.period}|{epoch_us(start)}|{request.creator}"
        offset = decode_int_cursor(request.page_token, scope) or 0
        limit = page_size(request.page_size, default=LEADERBOARD_PAGE)
        entries = await self._service.read(self._service.reader.leaderboard, party=party, limit=limit + 1,
                                           offset=offset, creator=creator, since_us=epoch_us(start),
                                           until_us=epoch_us(end))
        response = gifts_pb2.GetPeriodLeaderboardResponse(
            entries=[messages.leaderboard_entry(entry, party) for entry in entries[:limit]],
            period_start_time=messages.timestamp(epoch_us(start)), period_end_time=messages.timestamp(epoch_us(end)))
        if len(entries) > limit:
            response.next_page_token = encode_cursor(scope, offset + limit)
        return response


def period_bounds(moment: dt.datetime, period: int) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the UTC day, ISO week (from Monday) or calendar month holding `moment`."""
    day = dt.datetime.combine(moment.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
    if period == gifts_pb2.LEADERBOARD_PERIOD_DAY:
        return day, day + dt.timedelta(days=1)
    if period == gifts_pb2.LEADERBOARD_PERIOD_WEEK:
        monday = day - dt.timedelta(days=day.weekday())
        return monday, monday + dt.timedelta(weeks=1)
    first = day.replace(day=1)
    return first, (first + dt.timedelta(days=32)).replace(day=1)


class PayoutServicer(payouts_pb2_grpc.PayoutServiceServicer):
    def __init__(self, service: GiftsService) -> None:
        self._service = service

    async def RequestPayout(self, request: payouts_pb2.RequestPayoutRequest,
                            context: grpc.aio.ServicerContext) -> payouts_pb2.RequestPayoutResponse:
        (user,) = messages.name_parts(request.parent, field="parent", shape=messages.USER_NAME)
        principal = _require_self(user, field="parent")
        command = RequestPayout(principal, request.request_id, request.diamonds, request.currency_code,
                                request.payout_method)
        result = await self._service.run(Gifting.request_payout, command)
        return payouts_pb2.RequestPayoutResponse(payout=messages.payout(result, request.request_id))

    async def GetPayoutPolicy(self, request: payouts_pb2.GetPayoutPolicyRequest,
                              context: grpc.aio.ServicerContext) -> payouts_pb2.GetPayoutPolicyResponse:
        if request.currency_code not in ("", "EUR"):
            raise InvalidArgument.for_field("currency_code", "payouts are made in EUR",
                                            reason="CURRENCY_NOT_SUPPORTED")
        config = self._service.config
        policy = payouts_pb2.GetPayoutPolicyResponse(
            currency_code="EUR", diamond_value_micros=1_000_000 // 100 // config.rates.diamonds_per_eur_cent,
            creator_share_bps=10_000 - config.rates.platform_fee_basis_points,
            minimum_payout_minor=config.payouts.minimum_eur_cents,
            daily_limit_minor=config.payouts.daily_limit_eur_cents)
        policy.hold_period.FromTimedelta(config.payouts.diamond_hold)
        return policy

    async def GetPayout(self, request: payouts_pb2.GetPayoutRequest,
                        context: grpc.aio.ServicerContext) -> payouts_pb2.GetPayoutResponse:
        user, payout_id = messages.name_parts(request.name, field="name", shape=messages.PAYOUT_NAME)
        _require_self_or_staff(user)
        result = await self._service.read(self._service.reader.payout, payout_id)
        if result is None or result.user_id != user:
            raise NotFound(f"no payout {request.name}", resource_name=request.name, reason="PAYOUT_NOT_FOUND")
        return payouts_pb2.GetPayoutResponse(payout=messages.payout(result))

    async def ListPayouts(self, request: payouts_pb2.ListPayoutsRequest,
                          context: grpc.aio.ServicerContext) -> payouts_pb2.ListPayoutsResponse:
        (user,) = messages.name_parts(request.parent, field="parent", shape=messages.USER_NAME)
        _require_self_or_staff(user)
        scope = f"{request.parent}|{request.state}"
        limit = page_size(request.page_size)
        found = await self._service.read(self._service.reader.payouts, user, limit=limit + 1,
                                         before_payout_id=decode_cursor(request.page_token, scope),
                                         state=messages.PAYOUT_STATE_FILTERS.get(request.state))
        response = payouts_pb2.ListPayoutsResponse(payouts=[messages.payout(result) for result in found[:limit]])
        if len(found) > limit:
            response.next_page_token = encode_cursor(scope, found[limit - 1].payout_id)
        return response

    async def SettlePayout(self, request: payouts_pb2.SettlePayoutRequest,
                           context: grpc.aio.ServicerContext) -> payouts_pb2.SettlePayoutResponse:
        user, payout_id = messages.name_parts(request.name, field="name", shape=messages.PAYOUT_NAME)
        existing = await self._service.read(self._service.reader.payout, payout_id)
        if existing is None or existing.user_id != user:
            raise NotFound(f"no payout {request.name}", resource_name=request.name, reason="PAYOUT_NOT_FOUND")
        command = SettlePayout(_acting(current_principal()), request.request_id, payout_id,
                               request.outcome == payouts_pb2.PAYOUT_OUTCOME_PAID, request.provider_reference,
                               request.failure_reason)
        result = await self._service.run(Gifting.settle_payout, command)
        return payouts_pb2.SettlePayoutResponse(payout=messages.payout(result))


class AccountStandingServicer(standing_pb2_grpc.AccountStandingServiceServicer):
    def __init__(self, service: GiftsService) -> None:
        self._service = service

    async def GetAccountStanding(self, request: standing_pb2.GetAccountStandingRequest,
                                 context: grpc.aio.ServicerContext) -> standing_pb2.GetAccountStandingResponse:
        (user,) = messages.name_parts(request.name, field="name", shape=messages.STANDING_NAME)
        _require_self_or_staff(user)
        standing = await self._service.read(self._service.reader.account_standing, user)
        return standing_pb2.GetAccountStandingResponse(standing=messages.standing(standing))

    async def UpdateAccountStanding(self, request: standing_pb2.UpdateAccountStandingRequest,
                                    context: grpc.aio.ServicerContext) -> standing_pb2.UpdateAccountStandingResponse:
        (user,) = messages.name_parts(request.standing.name, field="standing.name", shape=messages.STANDING_NAME)
        changes = messages.standing_changes(request.standing, list(request.update_mask.paths))
        await self._service.run(Gifting.update_account_facts,
                                UpdateAccountFacts(_acting(current_principal()), user, changes))
        standing = await self._service.read(self._service.reader.account_standing, user)
        return standing_pb2.UpdateAccountStandingResponse(standing=messages.standing(standing))
