"""The gifts use cases: plain functions of (command, unit of work), run inside the store.

Each use case runs as one unit of work on the store's committer thread: it reads, decides
and writes inside one savepoint of a durable batch, so everything it checks still holds
when it writes, and its effect commits whole or not at all. A refusal is a `DomainError`;
the store rolls the unit back and calls `record_refusal`, which leaves the refusal's
audit event in the same batch.

Money moves only through `Ledger` (see `ledger.py` for the invariants), and only inside
`run_once`, so a request id has one effect.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import random
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from libs.auth.principal import Principal, Role
from libs.clock import Clock
from libs.errors import DomainError, FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.gifts.audit import AuditEvent, AuditOutbox, Outcome
from services.gifts.config import GiftsConfig
from services.gifts.eligibility import (
    AccountFacts,
    EligibilityFacts,
    gifts_barred_reason,
    require_adult,
    require_good_standing,
    require_live_eligible,
)
from services.gifts.fraud import GiftHistory, Verdict, assess_gift, rejection_error
from services.gifts.idempotency import Parameters, RequestLog, run_once
from services.gifts.ledger import (
    GIFT_REVERSAL_CODES,
    Account,
    Code,
    Entry,
    InsufficientFunds,
    Ledger,
    Phase,
    Purpose,
    TransferOrder,
    gift_orders,
    split_gift,
)
from services.gifts.live import EndReason, LiveSession, LiveSessions, LiveState, require_live
from services.gifts.payments import PaymentProvider, ReceiptRejected

MAX_GIFT_COUNT = 10_000
SWEEP_BATCH = 200
SYSTEM_ACTOR = "services/gifts"


def epoch_us(moment: dt.datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError("the clock must return aware datetimes")
    return (moment - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)) // dt.timedelta(microseconds=1)


def _us(delta: dt.timedelta) -> int:
    return delta // dt.timedelta(microseconds=1)


def uuid7(now_us: int) -> str:
    """A time-ordered UUID (RFC 9562 version 7): ids made later sort later, so the indexes
    they key grow at one end instead of splitting pages all over.

    The random bits only keep ids of the same millisecond apart; they are not secrets (every
    read is authorised), so the fast generator serves.
    """
    value = (now_us // 1000 & (1 << 48) - 1) << 80 | random.getrandbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return str(uuid.UUID(int=value))


# --- records the use cases keep besides the ledger -------------------------------------------


class GiftState(enum.StrEnum):
    POSTED = "POSTED"
    HELD = "HELD"
    REJECTED = "REJECTED"
    EXPIRED = "EXPIRED"
    REVERSED = "REVERSED"


@dataclass(frozen=True)
class SentGift:
    gift_id: str
    request_id: str
    live_id: str
    sender: str
    creator: str
    catalog_gift: str
    count: int
    coins: int
    fee_coins: int
    diamonds: int
    sent_at_us: int
    hold_reasons: str  # comma-separated fraud reasons; '' when it was posted at once


@dataclass(frozen=True)
class TopUp:
    top_up_id: str
    request_id: str
    user_id: str
    provider: str
    receipt_id: str
    pack_id: str
    coins: int
    price_eur_cents: int
    purchased_at_us: int


class PayoutState(enum.StrEnum):
    PENDING = "PENDING"
    POSTED = "POSTED"
    VOIDED = "VOIDED"


@dataclass(frozen=True)
class Payout:
    payout_id: str
    request_id: str
    user_id: str
    eur_cents: int
    diamonds: int
    payout_method: str
    requested_at_us: int
    expires_at_us: int
    pending_transfer_ids: tuple[int, ...]


@dataclass(frozen=True)
class PayoutSettlement:
    """The payment rail's word on a payout; expiry needs none (it is in the ledger)."""

    payout_id: str
    request_id: str
    paid: bool
    provider_reference: str
    failure_reason: str
    settled_at_us: int


class GiftRecords(Protocol):
    def insert_gift(self, gift: SentGift) -> None: ...

    def gift(self, gift_id: str) -> SentGift | None: ...

    def append_to_feed(self, gift: SentGift, now_us: int) -> int: ...

    def place_diamond_hold(self, gift: SentGift, matures_at_us: int) -> None: ...

    def settle_diamond_hold(self, gift_id: str) -> None: ...

    def matured_holds(self, now_us: int, limit: int, creator: str | None = None) -> list[str]:
        """Gift ids whose diamonds are due for release, oldest first."""
        ...

    def held_diamond_gifts_sent_by(self, sender: str) -> list[str]:
        """Gift ids from `sender` whose diamonds are still on hold, newest first."""
        ...

    def gift_entries(self, gift_id: str) -> list[Entry]: ...

    def unresolved_pending(self, *, gift_id: str | None = None, transfer_ids: tuple[int, ...] = ()) -> list[Entry]: ...

    def unresolved_held_gifts_of(self, sender: str) -> list[str]: ...

    def expired_pending(self, now_us: int, limit: int) -> list[Entry]: ...


class TopUps(Protocol):
    def insert_top_up(self, top_up: TopUp, now_us: int) -> None:
        """Raises FailedPrecondition RECEIPT_ALREADY_REDEEMED if the receipt was used."""
        ...

    def top_up(self, top_up_id: str) -> TopUp | None: ...

    def insert_top_up_reversal(self, top_up_id: str, request_id: str, kind: str, now_us: int) -> None:
        """Raises FailedPrecondition TOP_UP_ALREADY_REVERSED on a second reversal."""
        ...


class PayoutOutcomes(Protocol):
    """What says where a payout stands: its settlement by the rail and its ledger resolution."""

    def payout_settlement(self, payout_id: str) -> PayoutSettlement | None: ...

    def payout_resolution(self, payout: Payout) -> tuple[Phase, int] | None:
        """How and when the payout's pending transfers were resolved; None while pending."""
        ...


class Payouts(PayoutOutcomes, Protocol):
    def insert_payout(self, payout: Payout) -> None: ...

    def payout(self, payout_id: str) -> Payout | None: ...

    def insert_payout_settlement(self, settlement: PayoutSettlement) -> None: ...

    def payout_cents_since(self, user_id: str, since_us: int) -> int:
        """EUR cents of the user's payouts requested after `since_us` that were not voided or expired."""
        ...


class AccountFactsRegistry(EligibilityFacts, Protocol):
    def put_account_facts(self, facts: AccountFacts, *, updated_by: str, now_us: int) -> None: ...

    def coins_account_opened_at(self, user_id: str) -> int | None: ...


class GiftsUnitOfWork(Ledger, RequestLog, LiveSessions, AccountFactsRegistry, GiftHistory, GiftRecords, TopUps,
                      Payouts, AuditOutbox, Protocol):
    """Everything a use case may touch, inside one unit of work of the store."""


# --- commands and results ----------------------------------------------------------------------


@dataclass(frozen=True)
class StartLive:
    actor: Principal
    request_id: str
    title: str
    max_duration: dt.timedelta | None = None  # capped by the platform's maximum


@dataclass(frozen=True)
class EndLive:
    actor: Principal
    live_id: str
    request_id: str = ""


@dataclass(frozen=True)
class UpdateAccountFacts:
    """Change some facts of one account (the others keep their recorded values)."""

    actor: Principal
    user_id: str
    changes: dict[str, Any]
    request_id: str = ""


@dataclass(frozen=True)
class TopUpCoins:
    actor: Principal
    request_id: str
    pack_id: str
    provider: str
    receipt: str


@dataclass(frozen=True)
class SendGift:
    actor: Principal
    request_id: str
    live_id: str
    gift_id: str
    count: int
    host: str | None = None  # when the caller named the LIVE with its host, the host it named


@dataclass(frozen=True)
class ReviewHeldGift:
    actor: Principal
    request_id: str
    gift_id: str
    approve: bool
    reason: str = ""


@dataclass(frozen=True)
class RequestPayout:
    actor: Principal
    request_id: str
    diamonds: int
    currency_code: str = "EUR"
    payout_method: str = "default"


@dataclass(frozen=True)
class SettlePayout:
    actor: Principal
    request_id: str
    payout_id: str
    paid: bool
    provider_reference: str = ""
    failure_reason: str = ""


class ReversalKind(enum.StrEnum):
    REFUND = "REFUND"
    CHARGEBACK = "CHARGEBACK"


@dataclass(frozen=True)
class ReverseTopUp:
    actor: Principal
    request_id: str
    top_up_id: str
    kind: ReversalKind
    provider_reference: str = ""


Command = StartLive | EndLive | UpdateAccountFacts | TopUpCoins | SendGift | ReviewHeldGift | RequestPayout | \
    SettlePayout | ReverseTopUp


@dataclass(frozen=True)
class TopUpResult:
    top_up_id: str
    coins_transfer_id: int  # the wallet's credit entry, which names the top-up to callers
    coins: int
    price_eur_cents: int
    coins_available: int
    created_at_us: int


@dataclass(frozen=True)
class GiftResult:
    """A gift as its sender saw it when the request was answered (replayed as is on retry)."""

    gift_id: str
    live_id: str
    creator: str
    catalog_gift: str
    count: int
    state: str  # GiftState
    coins: int
    fee_coins: int
    diamonds: int
    hold_reasons: str
    sequence: int  # its place in the LIVE feed; 0 while held
    sent_at_us: int
    coins_available: int


@dataclass(frozen=True)
class PayoutResult:
    payout_id: str
    user_id: str
    state: str  # PayoutState
    diamonds: int
    eur_cents: int
    payout_method: str
    requested_at_us: int
    expires_at_us: int
    void_reason: str = ""
    provider_reference: str = ""
    settled_at_us: int = 0


@dataclass(frozen=True)
class ReversalResult:
    top_up_id: str
    kind: str
    coins_clawed_back: int
    gifts_reversed: int
    diamonds_clawed_back: int
    coins_unrecovered: int


@dataclass(frozen=True)
class SweepResult:
    pending_expired: int
    holds_released: int
    lives_ended: int


# --- the use cases ---------------------------------------------------------------------------


class Gifting:
    def __init__(self, config: GiftsConfig, *, clock: Clock, payments: Mapping[str, PaymentProvider],
                 new_id: Callable[[], str] | None = None) -> None:
        self.config = config
        self._clock = clock
        self._payments = payments
        self._new_id = new_id or (lambda: uuid7(epoch_us(clock())))

    def _now(self) -> tuple[int, dt.date]:
        moment = self._clock()
        return epoch_us(moment), moment.astimezone(dt.UTC).date()

    # LIVE -------------------------------------------------------------------------------------

    def start_live(self, uow: GiftsUnitOfWork, command: StartLive) -> LiveSession:
        now_us, today = self._now()
        host = _user_of(command.actor)
        policy = self.config.live
        duration = min(command.max_duration or policy.max_duration, policy.max_duration)
        parameters: Parameters = {"title": command.title, "max_duration_us": _us(duration)}

        def apply() -> LiveSession:
            facts = uow.account_facts(host)
            require_live_eligible(command.actor, facts, min_followers=policy.min_followers, today=today)
            self._end_overdue(uow, uow.open_live_of(host), now_us)
            session = LiveSession(live_id=self._new_id(), host=host, title=command.title, started_at_us=now_us,
                                  deadline_us=now_us + _us(duration), gifts_barred_reason=gifts_barred_reason(facts))
            uow.insert_live(session)
            # Diamonds land on hold here; opening it now keeps SendGift from having to.
            uow.open_account(Account.of_user(host, Purpose.DIAMONDS_ON_HOLD), now_us)
            self._audit(uow, command, Outcome.APPLIED, session.name, now_us,
                        details={"gifts_barred_reason": session.gifts_barred_reason})
            return session

        return run_once(uow, request_id=command.request_id, operation="StartLive", caller=command.actor.subject,
                        parameters=parameters, now_us=now_us, result_type=LiveSession, apply=apply)

    def end_live(self, uow: GiftsUnitOfWork, command: EndLive) -> LiveSession:
        now_us, _ = self._now()
        session = uow.live(command.live_id)
        if session is None:
            raise NotFound(f"no LIVE session {command.live_id}", resource_name=f"lives/{command.live_id}",
                           reason="LIVE_NOT_FOUND")
        admin = command.actor.has_role(Role.ADMIN)
        if session.host != command.actor.user_id and not admin:
            raise PermissionDenied("only the host can end a LIVE", reason="NOT_LIVE_HOST")
        if session.state_at(now_us) is LiveState.LIVE:
            reason = (EndReason.ENDED_BY_CREATOR if session.host == command.actor.user_id
                      else EndReason.STOPPED_BY_PLATFORM)
            uow.end_live(session.live_id, now_us, reason)
            self._audit(uow, command, Outcome.APPLIED, session.name, now_us, reason=reason)
        else:
            self._end_overdue(uow, session, now_us)
        ended = uow.live(session.live_id)
        assert ended is not None
        return ended

    def _end_overdue(self, uow: GiftsUnitOfWork, session: LiveSession | None, now_us: int) -> bool:
        if session is None or session.ended_at_us is not None or now_us < session.deadline_us:
            return False
        return uow.end_live(session.live_id, session.deadline_us, EndReason.MAX_DURATION_REACHED)

    def update_account_facts(self, uow: GiftsUnitOfWork, command: UpdateAccountFacts) -> AccountFacts:
        now_us, _ = self._now()
        _require_role(command.actor, Role.ADMIN)
        facts = dataclasses.replace(uow.account_facts(command.user_id), **command.changes)
        uow.put_account_facts(facts, updated_by=command.actor.subject, now_us=now_us)
        self._audit(uow, command, Outcome.APPLIED, f"users/{facts.user_id}/standing", now_us, details={
            "follower_count": str(facts.follower_count), "good_standing": str(facts.good_standing),
            "restriction_reason": facts.restriction_reason, "category": facts.category,
            "identity_verified": str(facts.identity_verified),
        })
        return facts

    # Coins ------------------------------------------------------------------------------------

    def top_up(self, uow: GiftsUnitOfWork, command: TopUpCoins) -> TopUpResult:
        now_us, today = self._now()
        user = _user_of(command.actor)
        require_adult(command.actor, today, reason="BUYER_UNDER_18")
        parameters: Parameters = {"pack": command.pack_id, "provider": command.provider,
                                  "receipt_sha256": hashlib.sha256(command.receipt.encode()).hexdigest()}

        def apply() -> TopUpResult:
            provider = self._payments.get(command.provider)
            if provider is None:
                raise ReceiptRejected(f"no payment provider {command.provider!r}", "UNKNOWN_PROVIDER")
            purchase = provider.verify_receipt(command.receipt)
            if purchase.user_id != user:
                raise PermissionDenied("the receipt belongs to another user", reason="RECEIPT_NOT_FOR_CALLER")
            pack = self.config.catalog.pack(purchase.pack_id)
            if (pack is None or pack.pack_id != command.pack_id
                    or (pack.coins, pack.price_eur_cents) != (purchase.coins, purchase.price_eur_cents)):
                raise ReceiptRejected("the receipt is not for this published coin pack", "PACK_MISMATCH")
            if now_us - purchase.purchased_at_us > _us(self.config.receipt_max_age):
                raise ReceiptRejected("the receipt is too old to redeem", "EXPIRED")
            top_up = TopUp(self._new_id(), command.request_id, user, provider.name, purchase.receipt_id,
                           pack.pack_id, pack.coins, pack.price_eur_cents, purchase.purchased_at_us)
            uow.insert_top_up(top_up, now_us)
            coins = Account.of_user(user, Purpose.COINS)
            uow.open_account(coins, now_us)
            _, coins_transfer = uow.post(command.request_id, [
                TransferOrder(Account.platform(Purpose.PAYMENT_PROVIDER), Account.platform(Purpose.CASH),
                              pack.price_eur_cents, Code.TOP_UP_PAYMENT),
                TransferOrder(Account.platform(Purpose.COIN_ISSUANCE), coins, pack.coins, Code.TOP_UP_COINS),
            ], now_us)
            self._audit(uow, command, Outcome.APPLIED, f"users/{user}/wallet/transactions/{coins_transfer}", now_us,
                        details={"coins": str(pack.coins), "price_eur_cents": str(pack.price_eur_cents),
                                 "provider": provider.name, "receipt_id": purchase.receipt_id})
            return TopUpResult(top_up.top_up_id, coins_transfer, pack.coins, pack.price_eur_cents,
                               _available(uow, coins), now_us)

        return run_once(uow, request_id=command.request_id, operation="TopUpCoins", caller=command.actor.subject,
                        parameters=parameters, now_us=now_us, result_type=TopUpResult, apply=apply)

    # Gifts ------------------------------------------------------------------------------------

    def send_gift(self, uow: GiftsUnitOfWork, command: SendGift) -> GiftResult:
        now_us, today = self._now()
        sender = _user_of(command.actor)
        require_adult(command.actor, today, reason="SENDER_UNDER_18")
        if not 1 <= command.count <= MAX_GIFT_COUNT:
            raise InvalidArgument.for_field("count", f"must be within 1..{MAX_GIFT_COUNT}")
        catalog_gift = self.config.catalog.gift(command.gift_id)
        parameters: Parameters = {"live": command.live_id, "gift": command.gift_id, "count": command.count}

        def apply() -> GiftResult:
            session = require_live(uow, command.live_id, now_us, host=command.host)
            barred = session.gifts_barred_reason or gifts_barred_reason(uow.account_facts(session.host))
            if barred:
                raise FailedPrecondition("this creator cannot receive gifts", reason="GIFTS_DISABLED",
                                         metadata={"live": session.name, "why": barred})
            sender_facts = uow.account_facts(sender)
            require_good_standing(sender_facts)
            coins_account = Account.of_user(sender, Purpose.COINS)
            coins = catalog_gift.coins * command.count
            wallet_opened_at_us = uow.coins_account_opened_at(sender)
            joined_at_us = sender_facts.joined_at_us or wallet_opened_at_us or now_us
            assessment = assess_gift(uow, self.config.fraud, sender=sender, recipient=session.host, coins=coins,
                                     now_us=now_us, sender_joined_at_us=joined_at_us)
            if assessment.verdict is Verdict.REJECT:
                raise rejection_error(assessment, self.config.fraud)
            if wallet_opened_at_us is None:  # never bought a coin
                raise InsufficientFunds(coins_account, available=0, required=coins)
            split = split_gift(coins, self.config.rates)
            gift = SentGift(self._new_id(), command.request_id, session.live_id, sender, session.host,
                            catalog_gift.gift_id, command.count, coins, split.fee_coins, split.diamonds, now_us,
                            ",".join(assessment.reasons))
            uow.insert_gift(gift)
            orders = gift_orders(sender, session.host, split, gift.gift_id)
            resource = f"{session.name}/gifts/{gift.gift_id}"
            details = {"coins": str(coins), "diamonds": str(split.diamonds), "fee_coins": str(split.fee_coins),
                       "creator": f"users/{session.host}"}
            if assessment.verdict is Verdict.HOLD:
                uow.pend(command.request_id, orders, now_us, now_us + _us(self.config.held_gift_review_timeout))
                state, sequence = GiftState.HELD, 0
                self._audit(uow, command, Outcome.HELD, resource, now_us, reason=assessment.reasons[0],
                            details={**details, "hold_reasons": gift.hold_reasons})
            else:
                uow.post(command.request_id, orders, now_us)
                state, sequence = GiftState.POSTED, self._deliver_gift(uow, gift, now_us)
                self._audit(uow, command, Outcome.APPLIED, resource, now_us, details=details)
            return GiftResult(gift.gift_id, gift.live_id, gift.creator, gift.catalog_gift, gift.count, state, coins,
                              split.fee_coins, split.diamonds, gift.hold_reasons, sequence, now_us,
                              _available(uow, coins_account))

        return run_once(uow, request_id=command.request_id, operation="SendGift", caller=command.actor.subject,
                        parameters=parameters, now_us=now_us, result_type=GiftResult, apply=apply)

    def _deliver_gift(self, uow: GiftsUnitOfWork, gift: SentGift, now_us: int) -> int:
        """A posted gift starts its diamonds' hold and joins the LIVE feed; returns its sequence."""
        if gift.diamonds:
            uow.place_diamond_hold(gift, now_us + _us(self.config.payouts.diamond_hold))
        return uow.append_to_feed(gift, now_us)

    def review_held_gift(self, uow: GiftsUnitOfWork, command: ReviewHeldGift) -> GiftResult:
        now_us, _ = self._now()
        _require_role(command.actor, Role.ADMIN)
        parameters: Parameters = {"gift": command.gift_id, "approve": command.approve, "reason": command.reason}

        def apply() -> GiftResult:
            gift = uow.gift(command.gift_id)
            pending = uow.unresolved_pending(gift_id=command.gift_id) if gift else []
            if gift is None or not pending:
                raise FailedPrecondition("the gift is not waiting for review", reason="GIFT_NOT_HELD",
                                         metadata={"gift": command.gift_id})
            ids = [entry.transfer_id for entry in pending]
            sequence = 0
            if pending[0].timeout_us is not None and now_us >= pending[0].timeout_us:
                uow.resolve(command.request_id, ids, Phase.EXPIRE_PENDING, now_us)
                state = GiftState.EXPIRED
            elif command.approve:
                uow.resolve(command.request_id, ids, Phase.POST_PENDING, now_us)
                state, sequence = GiftState.POSTED, self._deliver_gift(uow, gift, now_us)
            else:
                uow.resolve(command.request_id, ids, Phase.VOID_PENDING, now_us)
                state = GiftState.REJECTED
            self._audit(uow, command, Outcome.APPLIED, f"lives/{gift.live_id}/gifts/{gift.gift_id}", now_us,
                        reason=command.reason or state, details={"state": state})
            return GiftResult(gift.gift_id, gift.live_id, gift.creator, gift.catalog_gift, gift.count, state,
                              gift.coins, gift.fee_coins, gift.diamonds,
                              gift.hold_reasons, sequence, gift.sent_at_us,
                              _available(uow, Account.of_user(gift.sender, Purpose.COINS)))

        return run_once(uow, request_id=command.request_id, operation="ReviewHeldGift",
                        caller=command.actor.subject, parameters=parameters, now_us=now_us,
                        result_type=GiftResult, apply=apply)

    # Payouts ----------------------------------------------------------------------------------

    def request_payout(self, uow: GiftsUnitOfWork, command: RequestPayout) -> PayoutResult:
        now_us, today = self._now()
        user = _user_of(command.actor)
        policy = self.config.payouts
        rate = self.config.rates.diamonds_per_eur_cent
        require_adult(command.actor, today, reason="CREATOR_UNDER_18")
        if command.currency_code != "EUR":
            raise InvalidArgument.for_field("currency_code", "payouts are made in EUR",
                                            reason="CURRENCY_NOT_SUPPORTED")
        if command.diamonds % rate:
            raise InvalidArgument.for_field("diamonds", f"must be a multiple of {rate} (one euro cent)")
        eur_cents = command.diamonds // rate
        parameters: Parameters = {"diamonds": command.diamonds, "currency_code": command.currency_code,
                                  "payout_method": command.payout_method}

        def apply() -> PayoutResult:
            facts = uow.account_facts(user)
            require_good_standing(facts)
            if not facts.identity_verified:
                raise FailedPrecondition("payouts need a verified identity", reason="IDENTITY_NOT_VERIFIED")
            if eur_cents < policy.minimum_eur_cents:
                raise FailedPrecondition("the payout is below the minimum", reason="BELOW_PAYOUT_MINIMUM",
                                         metadata={"minimum_eur_cents": str(policy.minimum_eur_cents)})
            already = uow.payout_cents_since(user, now_us - _us(dt.timedelta(days=1)))
            if already + eur_cents > policy.daily_limit_eur_cents:
                raise FailedPrecondition(
                    "the payout would exceed the daily limit", reason="DAILY_PAYOUT_LIMIT_EXCEEDED",
                    metadata={"daily_limit_eur_cents": str(policy.daily_limit_eur_cents),
                              "already_requested_eur_cents": str(already)})
            self._release_matured_holds(uow, command.request_id, now_us, creator=user)
            available = Account.of_user(user, Purpose.DIAMONDS)
            uow.open_account(available, now_us)
            expires_at_us = now_us + _us(policy.settlement_timeout)
            transfer_ids = uow.pend(command.request_id, [
                TransferOrder(available, Account.platform(Purpose.DIAMOND_REDEMPTION), command.diamonds,
                              Code.PAYOUT_DIAMONDS),
                TransferOrder(Account.platform(Purpose.CASH), Account.platform(Purpose.PAYOUT_RAIL), eur_cents,
                              Code.PAYOUT_CASH),
            ], now_us, expires_at_us)
            payout = Payout(self._new_id(), command.request_id, user, eur_cents, command.diamonds,
                            command.payout_method, now_us, expires_at_us, tuple(transfer_ids))
            uow.insert_payout(payout)
            self._audit(uow, command, Outcome.APPLIED, f"users/{user}/payouts/{payout.payout_id}", now_us,
                        details={"eur_cents": str(eur_cents), "diamonds": str(command.diamonds)})
            return payout_result(payout, PayoutState.PENDING)

        return run_once(uow, request_id=command.request_id, operation="RequestPayout", caller=command.actor.subject,
                        parameters=parameters, now_us=now_us, result_type=PayoutResult, apply=apply)

    def settle_payout(self, uow: GiftsUnitOfWork, command: SettlePayout) -> PayoutResult:
        """The payout rail reports the transfer paid (post) or failed (void).

        Settling a settled payout the same way again answers with it unchanged; the other way
        is refused. A payout past its timeout expires instead, whatever the rail says.
        """
        now_us, _ = self._now()
        _require_role(command.actor, Role.ADMIN, Role.SERVICE)
        parameters: Parameters = {"payout": command.payout_id, "paid": command.paid,
                                  "provider_reference": command.provider_reference,
                                  "failure_reason": command.failure_reason}

        def apply() -> PayoutResult:
            payout = uow.payout(command.payout_id)
            if payout is None:
                raise NotFound(f"no payout {command.payout_id}", resource_name=f"payouts/{command.payout_id}",
                               reason="PAYOUT_NOT_FOUND")
            pending = uow.unresolved_pending(transfer_ids=payout.pending_transfer_ids)
            if not pending:
                settled = current_payout(uow, payout)
                if settled.state != (PayoutState.POSTED if command.paid else PayoutState.VOIDED) or \
                        settled.void_reason == "EXPIRED":
                    raise FailedPrecondition("the payout was already settled otherwise",
                                             reason="PAYOUT_ALREADY_SETTLED", metadata={"state": settled.state})
                return settled
            ids = [entry.transfer_id for entry in pending]
            if pending[0].timeout_us is not None and now_us >= pending[0].timeout_us:
                uow.resolve(command.request_id, ids, Phase.EXPIRE_PENDING, now_us)
            else:
                uow.resolve(command.request_id, ids, Phase.POST_PENDING if command.paid else Phase.VOID_PENDING,
                            now_us)
                uow.insert_payout_settlement(PayoutSettlement(payout.payout_id, command.request_id, command.paid,
                                                              command.provider_reference, command.failure_reason,
                                                              now_us))
            result = current_payout(uow, payout)
            self._audit(uow, command, Outcome.APPLIED, f"users/{payout.user_id}/payouts/{payout.payout_id}",
                        now_us, reason=result.void_reason or result.state,
                        details={"provider_reference": command.provider_reference})
            return result

        return run_once(uow, request_id=command.request_id, operation="SettlePayout", caller=command.actor.subject,
                        parameters=parameters, now_us=now_us, result_type=PayoutResult, apply=apply)

    # Refunds and chargebacks ------------------------------------------------------------------

    def reverse_top_up(self, uow: GiftsUnitOfWork, command: ReverseTopUp) -> ReversalResult:
        """Claw back a refunded or charged-back top-up.

        Coins come back first from what the buyer still holds: held gifts are voided, then
        the wallet is debited. If that is not enough, the buyer's gifts whose diamonds are
        still on hold are reversed whole, newest first (coins back to the buyer, diamonds
        back from the creator), and the wallet is debited again. What still cannot be
        recovered (diamonds already released) is the platform's loss, reported and audited.
        """
        now_us, _ = self._now()
        _require_role(command.actor, Role.ADMIN, Role.SERVICE)
        parameters: Parameters = {"top_up": command.top_up_id, "kind": command.kind,
                                  "provider_reference": command.provider_reference}

        def apply() -> ReversalResult:
            top_up = uow.top_up(command.top_up_id)
            if top_up is None:
                raise NotFound(f"no top-up {command.top_up_id}", resource_name=f"topUps/{command.top_up_id}",
                               reason="TOP_UP_NOT_FOUND")
            uow.insert_top_up_reversal(top_up.top_up_id, command.request_id, command.kind, now_us)
            request_id = command.request_id
            uow.post(request_id, [TransferOrder(Account.platform(Purpose.CASH), Account.platform(Purpose.PAYMENT_PROVIDER),
                                                top_up.price_eur_cents, Code.TOP_UP_REVERSAL_PAYMENT)], now_us)
            coins_account = Account.of_user(top_up.user_id, Purpose.COINS)
            for gift_id in uow.unresolved_held_gifts_of(top_up.user_id):
                pending = uow.unresolved_pending(gift_id=gift_id)
                uow.resolve(request_id, [entry.transfer_id for entry in pending], Phase.VOID_PENDING, now_us)
            remaining = top_up.coins - self._claw_back_coins(uow, request_id, coins_account, top_up.coins, now_us)
            gifts_reversed = diamonds_back = 0
            for held_gift_id in uow.held_diamond_gifts_sent_by(top_up.user_id) if remaining else []:
                diamonds_back += self._reverse_gift(uow, request_id, held_gift_id, now_us)
                gifts_reversed += 1
                remaining -= self._claw_back_coins(uow, request_id, coins_account, remaining, now_us)
                if not remaining:
                    break
            self._audit(uow, command, Outcome.APPLIED, f"users/{top_up.user_id}/topUps/{top_up.top_up_id}",
                        now_us, reason=command.kind, details={
                            "coins_unrecovered": str(remaining), "gifts_reversed": str(gifts_reversed),
                            "provider_reference": command.provider_reference})
            return ReversalResult(top_up.top_up_id, command.kind, top_up.coins - remaining, gifts_reversed,
                                  diamonds_back, remaining)

        return run_once(uow, request_id=command.request_id, operation="ReverseTopUp", caller=command.actor.subject,
                        parameters=parameters, now_us=now_us, result_type=ReversalResult, apply=apply)

    @staticmethod
    def _claw_back_coins(uow: GiftsUnitOfWork, request_id: str, coins_account: Account, wanted: int,
                         now_us: int) -> int:
        taken = min(wanted, _available(uow, coins_account))
        if taken > 0:
            uow.post(request_id, [TransferOrder(coins_account, Account.platform(Purpose.COIN_ISSUANCE), taken,
                                                Code.TOP_UP_CLAWBACK)], now_us)
        return max(taken, 0)

    @staticmethod
    def _reverse_gift(uow: GiftsUnitOfWork, request_id: str, gift_id: str, now_us: int) -> int:
        """Undo a posted gift whose diamonds are still on hold; returns the diamonds taken back."""
        legs = [entry for entry in uow.gift_entries(gift_id)
                if entry.code in GIFT_REVERSAL_CODES and entry.phase in (Phase.POSTED, Phase.POST_PENDING)]
        uow.post(request_id, [
            TransferOrder(Account.parse(entry.credit_account), Account.parse(entry.debit_account), entry.amount,
                          GIFT_REVERSAL_CODES[entry.code], gift_id)
            for entry in legs
        ], now_us)
        uow.settle_diamond_hold(gift_id)
        return sum(entry.amount for entry in legs if entry.code is Code.GIFT_DIAMONDS)

    # Time-driven work -------------------------------------------------------------------------

    def sweep(self, uow: GiftsUnitOfWork, request_id: str) -> SweepResult:
        """Expire overdue pending transfers, release matured diamonds and end overdue LIVEs.

        Runs as the service itself under a fresh request id; each pass does a bounded amount
        of work so one sweep never holds up a batch for long.
        """
        now_us, _ = self._now()
        uow.claim_request(request_id, "Sweep", SYSTEM_ACTOR, {}, now_us)
        expired = uow.expired_pending(now_us, SWEEP_BATCH)
        if expired:
            uow.resolve(request_id, [entry.transfer_id for entry in expired], Phase.EXPIRE_PENDING, now_us)
        released = self._release_matured_holds(uow, request_id, now_us)
        overdue = uow.overdue_lives(now_us, SWEEP_BATCH)
        for session in overdue:
            self._end_overdue(uow, session, now_us)
        result = SweepResult(len(expired), released, len(overdue))
        if expired or released:
            uow.record_audit(AuditEvent("Sweep", SYSTEM_ACTOR, Outcome.APPLIED, request_id, "ledger", now_us,
                                        details={"pending_expired": str(len(expired)),
                                                 "holds_released": str(released)}))
        uow.record_result(request_id, {"pending_expired": result.pending_expired,
                                       "holds_released": result.holds_released, "lives_ended": result.lives_ended})
        return result

    def _release_matured_holds(self, uow: GiftsUnitOfWork, request_id: str, now_us: int,
                               creator: str | None = None) -> int:
        released = 0
        for gift_id in uow.matured_holds(now_us, SWEEP_BATCH, creator):
            gift = uow.gift(gift_id)
            assert gift is not None
            available = Account.of_user(gift.creator, Purpose.DIAMONDS)
            uow.open_account(available, now_us)
            uow.post(request_id, [TransferOrder(Account.of_user(gift.creator, Purpose.DIAMONDS_ON_HOLD), available,
                                                gift.diamonds, Code.DIAMOND_HOLD_RELEASE, gift_id)], now_us)
            uow.settle_diamond_hold(gift_id)
            released += 1
        return released

    # Refusals ---------------------------------------------------------------------------------

    def record_refusal(self, uow: GiftsUnitOfWork, command: Command, error: DomainError) -> None:
        now_us, _ = self._now()
        details = dict(error.metadata)
        if isinstance(command, SendGift):
            details.update(live=command.live_id, gift=command.gift_id, count=str(command.count))
        self._audit(uow, command, Outcome.REFUSED, _resource_of(command), now_us, reason=error.reason,
                    details=details)

    @staticmethod
    def _audit(uow: GiftsUnitOfWork, command: Command, outcome: Outcome, resource: str, now_us: int, *,
               reason: str = "", details: dict[str, str] | None = None) -> None:
        uow.record_audit(AuditEvent(type(command).__name__, command.actor.subject, outcome, command.request_id,
                                    resource, now_us, reason, details or {}))


def payout_result(payout: Payout, state: PayoutState, settlement: PayoutSettlement | None = None,
                  *, expired_at_us: int = 0) -> PayoutResult:
    void_reason = ""
    if state is PayoutState.VOIDED:
        void_reason = (settlement.failure_reason or "FAILED") if settlement else "EXPIRED"
    settled_at_us = settlement.settled_at_us if settlement else expired_at_us
    return PayoutResult(payout.payout_id, payout.user_id, state, payout.diamonds, payout.eur_cents,
                        payout.payout_method, payout.requested_at_us, payout.expires_at_us, void_reason,
                        settlement.provider_reference if settlement else "", settled_at_us)


def current_payout(records: PayoutOutcomes, payout: Payout) -> PayoutResult:
    """Where a payout stands now: pending, posted by the rail, or voided (failed or expired)."""
    resolution = records.payout_resolution(payout)
    if resolution is None:
        return payout_result(payout, PayoutState.PENDING)
    phase, at_us = resolution
    settlement = records.payout_settlement(payout.payout_id)
    state = PayoutState.POSTED if phase is Phase.POST_PENDING else PayoutState.VOIDED
    return payout_result(payout, state, settlement if phase is not Phase.EXPIRE_PENDING else None,
                         expired_at_us=at_us)


def _resource_of(command: Command) -> str:
    match command:
        case SendGift():
            return f"lives/{command.live_id}"
        case EndLive():
            return f"lives/{command.live_id}"
        case ReviewHeldGift():
            return f"gifts/{command.gift_id}"
        case SettlePayout():
            return f"payouts/{command.payout_id}"
        case ReverseTopUp():
            return f"topUps/{command.top_up_id}"
        case UpdateAccountFacts():
            return f"users/{command.user_id}/standing"
        case _:
            return command.actor.subject


def _user_of(principal: Principal) -> str:
    user = principal.user_id
    if not user:
        raise PermissionDenied("this call is made by or for a user", reason="USER_REQUIRED")
    return user


def _require_role(principal: Principal, *roles: Role) -> None:
    if not principal.has_role(*roles):
        raise PermissionDenied("the caller lacks the role for this call", reason="ROLE_REQUIRED",
                               metadata={"roles": ",".join(sorted(roles))})


def _available(uow: GiftsUnitOfWork, account: Account) -> int:
    balance = uow.balance(account)
    return balance.available if balance else 0

