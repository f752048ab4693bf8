"""The five gifts gRPC services: handlers that only translate.

Each handler parses the request (`messages`), checks ownership where the resource names a
user (`model.access`), hands a command to the ledger runner or a query to the reader (off
the event loop), and maps the answer back. Errors are `libs.errors` classes, which the kit
turns into status codes and google.rpc details. The contract is in protos/limelight/gifts/v1/.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, TypeVar

import grpc
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

from libs.clock import Clock
from libs.errors import DomainError, InvalidArgument, NotFound
from libs.kit.context import current_principal
from libs.kit.telemetry import current_ids, inject_carrier
from libs.pagination import DEFAULT_PAGE_SIZE, PageTokens, page_size
from libs.privacy.fields import PersonalData
from libs.privacy.subject_data import Erasure
from libs.resource_names import ResourcePattern
from libs.timestamps import from_timestamp, to_timestamp
from services.gifts import messages
from services.gifts.config import GiftsConfig
from services.gifts.live_signals import LiveSignals
from services.gifts.model import names
from services.gifts.model.access import acting, require_self, require_self_or_staff
from services.gifts.model.audit import Trace
from services.gifts.model.eligibility import live_eligibility
from services.gifts.model.live import LIVE_TITLE, LiveSession, LiveState
from services.gifts.model.periods import period_bounds
from services.gifts.model.views import Party
from services.gifts.runner import LedgerRunner
from services.gifts.store.reads import GiftsReader
from services.gifts.usecases import subject_data
from services.gifts.usecases.commands import (
    Command,
    EndLive,
    RequestPayout,
    ReversalKind,
    ReverseTopUp,
    ReviewHeldGift,
    SendGift,
    SettlePayout,
    StartLive,
    TopUpCoins,
    UpdateAccountFacts,
)

LEADERBOARD_PAGE = 10
LIVE_SESSIONS = PageTokens("gifts.ListLiveSessions")
TRANSACTIONS = PageTokens("gifts.ListTransactions")
COIN_PACKS = PageTokens("gifts.ListCoinPacks")
CATALOG = PageTokens("gifts.ListGifts")
LIVE_LEADERBOARD = PageTokens("gifts.GetLiveLeaderboard")
PERIOD_LEADERBOARD = PageTokens("gifts.GetPeriodLeaderboard")
PAYOUTS = PageTokens("gifts.ListPayouts")
T = TypeVar("T")
STREAM_RECHECK_SECONDS = 1.0
FEED_BATCH = 500

R = TypeVar("R")
Call = grpc.aio.ServicerContext[Any, Any]


class RoomSubjectData(Protocol):
    """What the LIVE room holds about a person (usecases/room.py's `Room`)."""

    async def export_subject(self, user: str) -> dict[str, list[dict[str, object]]]: ...

    async def erase_subject(self, user: str) -> str: ...


@dataclass
class Backend:
    """What the handlers reach: the ledger runner, the reader, the published policy, the clock."""

    runner: LedgerRunner
    reader: GiftsReader
    config: GiftsConfig
    clock: Clock
    signals: LiveSignals
    transaction_ids: names.TransactionIds
    personal: PersonalData  # seals and opens LIVE titles under the host's data key
    # Refusals the ledger has audited already, so the kit's denial hook does not audit them twice.
    audited_refusals: weakref.WeakSet[DomainError] = field(default_factory=weakref.WeakSet)
    # The host a co-hosted session's gift goes to (the LIVE room knows who co-hosts).
    choose_recipient: Callable[[str, str, str], Awaitable[str]] | None = None

    # The LIVE room's part of a data-subject request: export(user) and erase(user).
    room_subject_data: RoomSubjectData | None = None

    async def gift_recipient(self, creator: str, live_id: str, chosen: str) -> str:
        """The chosen host of `creators/{creator}/lives/{live_id}`, if they host it (room.py decides)."""
        assert self.choose_recipient is not None, "the LIVE room is not wired"
        return await self.choose_recipient(creator, live_id, chosen)

    def now(self) -> dt.datetime:
        return self.clock()

    async def run(self, command: Command[R]) -> R:
        """The command in the ledger's next durable batch, stamped with this call's trace and time."""
        try:
            trace = Trace(current_ids().trace_id, inject_carrier())
            return await self.runner.run(command, trace=trace, now=self.clock())
        except DomainError as refusal:
            self.audited_refusals.add(refusal)  # the ledger wrote its audit event with the refusal
            raise

    async def title_of(self, session: LiveSession) -> str:
        """The session's title in words; empty once its host was erased."""
        title = await self.personal.open_text(names.USER.format(user=session.host), LIVE_TITLE, session.sealed_title)
        return title or ""

    async def read(self, query: Callable[..., R], *args: Any, **kwargs: Any) -> R:
        """A query on the reader, off the event loop."""
        return await asyncio.to_thread(query, *args, **kwargs)


def _page_of(items: Sequence[T], tokens: PageTokens, *, requested_size: int, page_token: str,
             default_size: int) -> tuple[list[T], str]:
    """One page of a short list held in memory (the catalog), and the token for the next."""
    offset = tokens.decode_int(page_token) or 0
    limit = page_size(requested_size, default=default_size)
    following = tokens.encode(offset + limit) if offset + limit < len(items) else ""
    return list(items[offset:offset + limit]), following


def _ids(pattern: ResourcePattern, name: str, *, field: str, wildcard: bool = False) -> tuple[str, ...]:
    """The ids in `name`, in the pattern's order (InvalidArgument on `field` if it does not fit)."""
    parsed = pattern.parse(name, field=field, wildcard=wildcard)
    return tuple(parsed[variable] for variable in pattern.variables)


class BackendSource(Protocol):
    """Where handlers find the backend, which the service builds when it starts."""

    @property
    def backend(self) -> Backend: ...


class _Handlers:
    def __init__(self, source: BackendSource) -> None:
        self._source = source

    @property
    def _service(self) -> Backend:
        return self._source.backend


class LiveServicer(_Handlers, live_pb2_grpc.LiveServiceServicer):
    async def _session_named(self, name: str, field: str = "name") -> tuple[str, str]:
        creator, live_id = _ids(names.LIVE, name, field=field)
        session = await self._service.read(self._service.reader.live, live_id)
        if session is None or session.host != creator:
            raise NotFound(f"no LIVE session {name}", resource_name=name, reason="LIVE_NOT_FOUND")
        return creator, live_id

    async def _summary(self, live_id: str) -> live_pb2.LiveSession:
        summary = await self._service.read(self._service.reader.live_summary, live_id)
        assert summary is not None
        return messages.live_session(summary.session, await self._service.title_of(summary.session),
                                     self._service.now(), gift_count=summary.gift_count,
                                     diamonds_earned=summary.diamonds_earned)

    async def StartLive(self, request: live_pb2.StartLiveRequest,
                        context: Call) -> live_pb2.StartLiveResponse:
        (creator,) = _ids(names.CREATOR, request.parent, field="parent")
        principal = require_self(current_principal(), creator, field="parent", resource=request.parent)
        max_duration = request.max_duration.ToTimedelta() if request.HasField("max_duration") else None
        host = names.USER.format(user=creator)
        # Sealed before the ledger sees it; a retry is told apart by the title's keyed fingerprint.
        sealed = await self._service.personal.seal_text(host, LIVE_TITLE, request.title)
        fingerprint = await self._service.personal.fingerprint(host, LIVE_TITLE, request.title)
        session = await self._service.run(StartLive(principal, request.request_id, sealed, fingerprint, max_duration))
        return live_pb2.StartLiveResponse(live_session=messages.live_session(
            session, await self._service.title_of(session), self._service.now()))

    async def EndLive(self, request: live_pb2.EndLiveRequest,
                      context: Call) -> live_pb2.EndLiveResponse:
        _, live_id = await self._session_named(request.name)
        await self._service.run(EndLive(acting(current_principal()), live_id))
        return live_pb2.EndLiveResponse(live_session=await self._summary(live_id))

    async def GetLiveSession(self, request: live_pb2.GetLiveSessionRequest,
                             context: Call) -> live_pb2.GetLiveSessionResponse:
        _, live_id = await self._session_named(request.name)
        return live_pb2.GetLiveSessionResponse(live_session=await self._summary(live_id))

    async def ListLiveSessions(self, request: live_pb2.ListLiveSessionsRequest,
                               context: Call) -> live_pb2.ListLiveSessionsResponse:
        (creator,) = _ids(names.CREATOR, request.parent, field="parent", wildcard=True)
        host = None if creator == names.UNKNOWN else creator
        state = {live_pb2.LIVE_SESSION_STATE_LIVE: LiveState.LIVE,
                 live_pb2.LIVE_SESSION_STATE_ENDED: LiveState.ENDED}.get(request.state)
        scope = f"{request.parent}|{request.state}"
        limit = page_size(request.page_size)
        now = self._service.now()
        sessions = await self._service.read(self._service.reader.lives, host=host, limit=limit + 1, state=state,
                                            before_live_id=LIVE_SESSIONS.decode_str(request.page_token, bound_to=scope),
                                            now=now)
        response = live_pb2.ListLiveSessionsResponse(
            live_sessions=[messages.live_session(session, await self._service.title_of(session), now)
                           for session in sessions[:limit]])
        if len(sessions) > limit:
            response.next_page_token = LIVE_SESSIONS.encode(sessions[limit - 1].live_id, bound_to=scope)
        return response

    async def GetLiveEligibility(self, request: live_pb2.GetLiveEligibilityRequest,
                                 context: Call) -> live_pb2.GetLiveEligibilityResponse:
        (creator,) = _ids(names.CREATOR, request.creator, field="creator")
        principal = current_principal()
        require_self_or_staff(principal, creator, resource=request.creator)
        standing = await self._service.read(self._service.reader.account_standing, creator)
        user = acting(principal)
        is_adult = user.is_adult_on(self._service.clock().date()) if user.user_id == creator else None
        return messages.live_eligibility(live_eligibility(
            standing.facts, min_followers=self._service.config.live.min_followers, is_adult=is_adult))


class WalletServicer(_Handlers, wallet_pb2_grpc.WalletServiceServicer):
    async def GetWallet(self, request: wallet_pb2.GetWalletRequest,
                        context: Call) -> wallet_pb2.GetWalletResponse:
        (user,) = _ids(names.WALLET, request.name, field="name")
        require_self_or_staff(current_principal(), user, resource=request.name)
        return wallet_pb2.GetWalletResponse(
            wallet=messages.wallet(await self._service.read(self._service.reader.wallet, user)))

    async def ListTransactions(self, request: wallet_pb2.ListTransactionsRequest,
                               context: Call) -> wallet_pb2.ListTransactionsResponse:
        (user,) = _ids(names.WALLET, request.parent, field="parent")
        require_self_or_staff(current_principal(), user, resource=request.parent)
        scope = f"{request.parent}|{request.kind}|{request.asset}"
        limit = page_size(request.page_size, default=100)
        lines = await self._service.read(
            self._service.reader.statement, user, before_id=self._before_transaction(request.page_token, scope),
            limit=limit + 1, codes=messages.TRANSACTION_KINDS.get(request.kind),
            purposes=messages.ASSETS.get(request.asset, messages.ASSETS[wallet_pb2.ASSET_COINS]
                                         | messages.ASSETS[wallet_pb2.ASSET_DIAMONDS]))
        response = wallet_pb2.ListTransactionsResponse(
            transactions=[messages.transaction(user, line, self._service.transaction_ids) for line in lines[:limit]])
        if len(lines) > limit:  # the position as a public id: a token counts no transfers either
            response.next_page_token = TRANSACTIONS.encode(
                self._service.transaction_ids.public(lines[limit - 1].entry.transfer_id), bound_to=scope)
        return response

    def _before_transaction(self, page_token: str, scope: str) -> int | None:
        after = TRANSACTIONS.decode_str(page_token, bound_to=scope)
        return self._service.transaction_ids.transfer_id(after) if after is not None else None

    async def ListCoinPacks(self, request: wallet_pb2.ListCoinPacksRequest,
                            context: Call) -> wallet_pb2.ListCoinPacksResponse:
        if request.currency_code not in ("", "EUR"):
            raise InvalidArgument.for_field("currency_code", "coin packs are priced in EUR",
                                            reason="CURRENCY_NOT_SUPPORTED")
        packs, following = _page_of(self._service.config.catalog.packs, COIN_PACKS, requested_size=request.page_size,
                                    page_token=request.page_token, default_size=DEFAULT_PAGE_SIZE)
        return wallet_pb2.ListCoinPacksResponse(coin_packs=[messages.coin_pack(pack) for pack in packs],
                                                next_page_token=following)

    async def TopUpCoins(self, request: wallet_pb2.TopUpCoinsRequest,
                         context: Call) -> wallet_pb2.TopUpCoinsResponse:
        (user,) = _ids(names.WALLET, request.wallet, field="wallet")
        principal = require_self(current_principal(), user, field="wallet", resource=request.wallet)
        (pack_id,) = _ids(names.COIN_PACK, request.coin_pack, field="coin_pack")
        command = TopUpCoins(principal, request.request_id, pack_id, request.receipt.provider,
                             request.receipt.receipt)
        result = await self._service.run(command)
        wallet = await self._service.read(self._service.reader.wallet, user)
        return wallet_pb2.TopUpCoinsResponse(transaction=messages.top_up_transaction(
            user, result, request.request_id, self._service.transaction_ids),
                                             wallet=messages.wallet(wallet))

    async def ReverseTopUp(self, request: wallet_pb2.ReverseTopUpRequest,
                           context: Call) -> wallet_pb2.ReverseTopUpResponse:
        user, entry = _ids(names.TRANSACTION, request.top_up, field="top_up")
        transfer_id = self._service.transaction_ids.transfer_id(entry)
        top_up_id = await self._service.read(self._service.reader.top_up_of_entry, user, transfer_id) \
            if transfer_id is not None else None
        if top_up_id is None:
            raise NotFound(f"no top-up {request.top_up}", resource_name=request.top_up, reason="TOP_UP_NOT_FOUND")
        kind = ReversalKind.REFUND if request.kind == wallet_pb2.REVERSAL_KIND_REFUND else ReversalKind.CHARGEBACK
        command = ReverseTopUp(acting(current_principal()), request.request_id, top_up_id, kind,
                               request.provider_reference)
        result = await self._service.run(command)
        lines = await self._service.read(self._service.reader.request_statement, user, request.request_id)
        return wallet_pb2.ReverseTopUpResponse(
            transactions=[messages.transaction(user, line, self._service.transaction_ids) for line in lines],
            coins_reversed=result.coins_clawed_back, diamonds_reversed=result.diamonds_clawed_back,
            unrecovered_coins=result.coins_unrecovered)


class GiftServicer(_Handlers, gifts_pb2_grpc.GiftServiceServicer):
    async def ListGifts(self, request: gifts_pb2.ListGiftsRequest,
                        context: Call) -> gifts_pb2.ListGiftsResponse:
        gifts, following = _page_of(self._service.config.catalog.gifts, CATALOG, requested_size=request.page_size,
                                    page_token=request.page_token, default_size=100)
        rates = self._service.config.rates
        return gifts_pb2.ListGiftsResponse(gifts=[messages.catalog_gift(gift, rates) for gift in gifts],
                                           next_page_token=following, rates=messages.gift_rates(rates))

    async def SendGift(self, request: gifts_pb2.SendGiftRequest,
                       context: Call) -> gifts_pb2.SendGiftResponse:
        creator, live_id = _ids(names.LIVE, request.live, field="live")
        (gift_id,) = _ids(names.CATALOG_GIFT, request.gift, field="gift")
        sender = acting(current_principal())
        recipient = None
        if request.recipient:
            (chosen,) = _ids(names.CREATOR, request.recipient, field="recipient")
            recipient = await self._service.gift_recipient(creator, live_id, chosen)
        result = await self._service.run(SendGift(sender, request.request_id, live_id, gift_id, request.count, creator,
                                                  recipient))
        transfer = messages.gift_transfer_from_result(result, request.request_id)
        transfer.sender = sender.subject
        return gifts_pb2.SendGiftResponse(gift_transfer=transfer, coin_balance=result.coins_available)

    async def ResolveHeldGift(self, request: gifts_pb2.ResolveHeldGiftRequest,
                              context: Call) -> gifts_pb2.ResolveHeldGiftResponse:
        _, _, gift_id = _ids(names.GIFT_TRANSFER, request.name, field="name")
        command = ReviewHeldGift(acting(current_principal()), request.request_id, gift_id,
                                 request.decision == gifts_pb2.HELD_GIFT_DECISION_RELEASE, request.reason)
        result = await self._service.run(command)
        return gifts_pb2.ResolveHeldGiftResponse(
            gift_transfer=messages.gift_transfer_from_result(result, request.request_id))

    async def StreamGifts(self, request: gifts_pb2.StreamGiftsRequest,
                          context: Call) -> AsyncIterator[gifts_pb2.StreamGiftsResponse]:
        creator, live_id = _ids(names.LIVE, request.live, field="live")
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
                if session.state_at(self._service.now()) is LiveState.ENDED:
                    return  # read after the end was known: nothing can follow
                # Woken by a commit for this LIVE; the timeout notices an end by the clock alone.
                await asyncio.wait([waiter], timeout=STREAM_RECHECK_SECONDS)
            finally:
                signals.forget(live_id, waiter)

    async def GetLiveLeaderboard(self, request: gifts_pb2.GetLiveLeaderboardRequest,
                                 context: Call) -> gifts_pb2.GetLiveLeaderboardResponse:
        creator, live_id = _ids(names.LIVE, request.live, field="live")
        session = await self._service.read(self._service.reader.live, live_id)
        if session is None or session.host != creator:
            raise NotFound(f"no LIVE session {request.live}", resource_name=request.live, reason="LIVE_NOT_FOUND")
        offset = LIVE_LEADERBOARD.decode_int(request.page_token, bound_to=request.live) or 0
        limit = page_size(request.page_size, default=LEADERBOARD_PAGE)
        entries = await self._service.read(self._service.reader.leaderboard, party=Party.GIFTER, limit=limit + 1,
                                           offset=offset, live_id=live_id)
        response = gifts_pb2.GetLiveLeaderboardResponse(
            entries=[messages.leaderboard_entry(entry, Party.GIFTER) for entry in entries[:limit]])
        if len(entries) > limit:
            response.next_page_token = LIVE_LEADERBOARD.encode(offset + limit, bound_to=request.live)
        return response

    async def GetPeriodLeaderboard(self, request: gifts_pb2.GetPeriodLeaderboardRequest,
                                   context: Call) -> gifts_pb2.GetPeriodLeaderboardResponse:
        party = messages.PARTIES[request.kind]
        moment = (from_timestamp(request.period_time, field="period_time") if request.HasField("period_time")
                  else self._service.clock())
        start, end = period_bounds(moment, messages.period(request.period))
        creator = _ids(names.CREATOR, request.creator, field="creator")[0] \
            if request.creator else None
        scope = f"{request.kind}|{request.period}|{start.isoformat()}|{request.creator}"
        offset = PERIOD_LEADERBOARD.decode_int(request.page_token, bound_to=scope) or 0
        limit = page_size(request.page_size, default=LEADERBOARD_PAGE)
        entries = await self._service.read(self._service.reader.leaderboard, party=party, limit=limit + 1,
                                           offset=offset, creator=creator, since=start, until=end)
        response = gifts_pb2.GetPeriodLeaderboardResponse(
            entries=[messages.leaderboard_entry(entry, party) for entry in entries[:limit]],
            period_start_time=to_timestamp(start), period_end_time=to_timestamp(end))
        if len(entries) > limit:
            response.next_page_token = PERIOD_LEADERBOARD.encode(offset + limit, bound_to=scope)
        return response


class PayoutServicer(_Handlers, payouts_pb2_grpc.PayoutServiceServicer):
    async def RequestPayout(self, request: payouts_pb2.RequestPayoutRequest,
                            context: Call) -> payouts_pb2.RequestPayoutResponse:
        (user,) = _ids(names.USER, request.parent, field="parent")
        principal = require_self(current_principal(), user, field="parent", resource=request.parent)
        command = RequestPayout(principal, request.request_id, request.diamonds, request.currency_code,
                                request.payout_method)
        result = await self._service.run(command)
        return payouts_pb2.RequestPayoutResponse(payout=messages.payout(result, request.request_id))

    async def GetPayoutPolicy(self, request: payouts_pb2.GetPayoutPolicyRequest,
                              context: Call) -> payouts_pb2.GetPayoutPolicyResponse:
        if request.currency_code not in ("", "EUR"):
            raise InvalidArgument.for_field("currency_code", "payouts are made in EUR",
                                            reason="CURRENCY_NOT_SUPPORTED")
        return messages.payout_policy(self._service.config)

    async def GetPayout(self, request: payouts_pb2.GetPayoutRequest,
                        context: Call) -> payouts_pb2.GetPayoutResponse:
        user, payout_id = _ids(names.PAYOUT, request.name, field="name")
        require_self_or_staff(current_principal(), user, resource=request.name)
        result = await self._service.read(self._service.reader.payout, payout_id)
        if result is None or result.user_id != user:
            raise NotFound(f"no payout {request.name}", resource_name=request.name, reason="PAYOUT_NOT_FOUND")
        return payouts_pb2.GetPayoutResponse(payout=messages.payout(result))

    async def ListPayouts(self, request: payouts_pb2.ListPayoutsRequest,
                          context: Call) -> payouts_pb2.ListPayoutsResponse:
        (user,) = _ids(names.USER, request.parent, field="parent")
        require_self_or_staff(current_principal(), user, resource=request.parent)
        scope = f"{request.parent}|{request.state}"
        limit = page_size(request.page_size)
        found = await self._service.read(self._service.reader.payouts, user, limit=limit + 1,
                                         before_payout_id=PAYOUTS.decode_str(request.page_token, bound_to=scope),
                                         state=messages.PAYOUT_STATE_FILTERS.get(request.state))
        response = payouts_pb2.ListPayoutsResponse(payouts=[messages.payout(result) for result in found[:limit]])
        if len(found) > limit:
            response.next_page_token = PAYOUTS.encode(found[limit - 1].payout_id, bound_to=scope)
        return response

    async def SettlePayout(self, request: payouts_pb2.SettlePayoutRequest,
                           context: Call) -> payouts_pb2.SettlePayoutResponse:
        user, payout_id = _ids(names.PAYOUT, request.name, field="name")
        existing = await self._service.read(self._service.reader.payout, payout_id)
        if existing is None or existing.user_id != user:
            raise NotFound(f"no payout {request.name}", resource_name=request.name, reason="PAYOUT_NOT_FOUND")
        command = SettlePayout(acting(current_principal()), request.request_id, payout_id,
                               request.outcome == payouts_pb2.PAYOUT_OUTCOME_PAID, request.provider_reference,
                               request.failure_reason)
        result = await self._service.run(command)
        return payouts_pb2.SettlePayoutResponse(payout=messages.payout(result))


class AccountStandingServicer(_Handlers, standing_pb2_grpc.AccountStandingServiceServicer):
    async def GetAccountStanding(self, request: standing_pb2.GetAccountStandingRequest,
                                 context: Call) -> standing_pb2.GetAccountStandingResponse:
        (user,) = _ids(names.STANDING, request.name, field="name")
        require_self_or_staff(current_principal(), user, resource=request.name)
        standing = await self._service.read(self._service.reader.account_standing, user)
        return standing_pb2.GetAccountStandingResponse(standing=messages.standing(standing))

    async def UpdateAccountStanding(self, request: standing_pb2.UpdateAccountStandingRequest,
                                    context: Call) -> standing_pb2.UpdateAccountStandingResponse:
        (user,) = _ids(names.STANDING, request.standing.name, field="standing.name")
        changes = messages.standing_changes(request.standing, list(request.update_mask.paths))
        await self._service.run(UpdateAccountFacts(acting(current_principal()), user, changes))
        standing = await self._service.read(self._service.reader.account_standing, user)
        return standing_pb2.UpdateAccountStandingResponse(standing=messages.standing(standing))


class GiftsSubjectData(_Handlers):
    """What gifts holds about a user, for the shared SubjectDataService (libs.privacy.servicer)."""

    async def export(self, user_id: str) -> dict[str, Any]:
        sections = await self._service.read(subject_data.export, self._service.reader, user_id, self._service.now())
        for session in sections.get("live_sessions", []):
            sealed = session.pop("sealed_title")
            session["title"] = await self._service.personal.open_text(names.USER.format(user=user_id), LIVE_TITLE,
                                                                      sealed) or ""
        if self._service.room_subject_data is not None:
            sections.update(await self._service.room_subject_data.export_subject(user_id))
        return sections

    async def erase(self, user_id: str) -> Erasure:
        erasure = subject_data.erasure()
        if self._service.room_subject_data is None:
            return erasure
        room = await self._service.room_subject_data.erase_subject(user_id)
        return replace(erasure, summary=f"{erasure.summary}; {room}")
