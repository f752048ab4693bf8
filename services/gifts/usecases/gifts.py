"""Sending a gift into a LIVE, and the review of a gift a fraud rule held."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from libs.auth.principal import Role
from libs.errors import FailedPrecondition, InvalidArgument
from services.gifts.model.audit import AuditOutbox, Outcome
from services.gifts.model.eligibility import EligibilityFacts, gifts_barred_reason, require_adult, require_good_standing
from services.gifts.model.fraud import GiftHistory, Verdict, assess_gift, rejection_error
from services.gifts.model.idempotency import Parameters, RequestLog, run_once
from services.gifts.model.ledger import (
    Account,
    Entry,
    InsufficientFunds,
    Ledger,
    Phase,
    Purpose,
    gift_orders,
    split_gifts,
)
from services.gifts.model.live import LiveSessions, require_live
from services.gifts.model.names import gift_transfer_name
from services.gifts.model.records import GiftState, SentGift
from services.gifts.usecases.commands import GiftResult, ReviewHeldGift, SendGift
from services.gifts.usecases.context import Context, audit, available, require_role, user_of
from services.gifts.usecases.holds import DiamondHolds

MAX_GIFT_COUNT = 10_000


class GiftFeed(Protocol):
    def append_to_feed(self, gift: SentGift, now: dt.datetime) -> int:
        """Add a posted gift to its LIVE's feed; returns its place in the feed."""
        ...


class PendingGifts(Protocol):
    def unresolved_pending(self, *, gift_id: str | None = None, transfer_ids: tuple[int, ...] = ()) -> list[Entry]: ...


class SendGiftUnit(RequestLog, LiveSessions, EligibilityFacts, GiftHistory, Ledger, DiamondHolds, GiftFeed,
                   AuditOutbox, Protocol):
    def insert_gift(self, gift: SentGift) -> None: ...

    def coins_account_opened_at(self, user_id: str) -> dt.datetime | None: ...


class ReviewHeldGiftUnit(RequestLog, Ledger, DiamondHolds, GiftFeed, PendingGifts, AuditOutbox, Protocol):
    """What ResolveHeldGift touches."""


def send_gift(context: Context, uow: SendGiftUnit, command: SendGift) -> GiftResult:
    now, config = context.now, context.config
    sender = user_of(command.actor)
    require_adult(command.actor, context.today, reason="SENDER_UNDER_18")
    if not 1 <= command.count <= MAX_GIFT_COUNT:
        raise InvalidArgument.for_field("count", f"must be within 1..{MAX_GIFT_COUNT}")
    catalog_gift = config.catalog.gift(command.gift_id)
    parameters: Parameters = {"live": command.live_id, "gift": command.gift_id, "count": command.count}
    if command.recipient is not None:
        parameters["recipient"] = command.recipient

    def apply() -> GiftResult:
        session = require_live(uow, command.live_id, now, host=command.host)
        recipient = command.recipient or session.host
        barred = (session.gifts_barred_reason if recipient == session.host else "") or \
            gifts_barred_reason(uow.account_facts(recipient))
        if barred:
            raise FailedPrecondition("this creator cannot receive gifts", reason="GIFTS_DISABLED",
                                     metadata={"live": session.name, "why": barred})
        sender_facts = uow.account_facts(sender)
        require_good_standing(sender_facts)
        coins_account = Account.of_user(sender, Purpose.COINS)
        coins = catalog_gift.coins * command.count
        wallet_opened_at = uow.coins_account_opened_at(sender)
        joined_at = sender_facts.joined_at or wallet_opened_at or now
        assessment = assess_gift(uow, config.fraud, sender=sender, recipient=recipient, coins=coins,
                                 now=now, sender_joined_at=joined_at)
        if assessment.verdict is Verdict.REJECT:
            raise rejection_error(assessment, config.fraud)
        if wallet_opened_at is None:  # never bought a coin
            raise InsufficientFunds(coins_account, available=0, required=coins)
        split = split_gifts(catalog_gift.coins, command.count, config.rates)
        gift = SentGift(context.new_id(), command.request_id, session.live_id, sender, recipient,
                        catalog_gift.gift_id, command.count, coins, split.fee_coins, split.diamonds, now,
                        ",".join(assessment.reasons))
        uow.insert_gift(gift)
        if recipient != session.host:  # a co-host: their LIVE did not open the account diamonds wait in
            uow.open_account(Account.of_user(recipient, Purpose.DIAMONDS_ON_HOLD), now)
        orders = gift_orders(sender, recipient, split, gift.gift_id)
        resource = gift_transfer_name(recipient, session.live_id, gift.gift_id)
        details = {"coins": str(coins), "diamonds": str(split.diamonds), "fee_coins": str(split.fee_coins)}
        if assessment.verdict is Verdict.HOLD:
            uow.pend(command.request_id, orders, now, now + config.held_gift_review_timeout)
            state, sequence = GiftState.HELD, 0
            audit(uow, context, command, Outcome.HELD, resource, reason=assessment.reasons[0],
                  details={**details, "hold_reasons": gift.hold_reasons})
        else:
            uow.post(command.request_id, orders, now)
            state, sequence = GiftState.POSTED, deliver_gift(context, uow, gift)
            audit(uow, context, command, Outcome.APPLIED, resource, details=details)
        return GiftResult(gift.gift_id, gift.live_id, gift.creator, gift.catalog_gift, gift.count, state, coins,
                          split.fee_coins, split.diamonds, gift.hold_reasons, sequence, now,
                          available(uow, coins_account))

    return run_once(uow, request_id=command.request_id, operation="SendGift", caller=command.actor.subject,
                    parameters=parameters, now=now, result_type=GiftResult, apply=apply)


class _Delivery(DiamondHolds, GiftFeed, Protocol):
    pass


def deliver_gift(context: Context, uow: _Delivery, gift: SentGift) -> int:
    """A posted gift starts its diamonds' hold and joins the LIVE feed; returns its sequence."""
    if gift.diamonds:
        uow.place_diamond_hold(gift, context.now + context.config.payouts.diamond_hold)
    return uow.append_to_feed(gift, context.now)


def review_held_gift(context: Context, uow: ReviewHeldGiftUnit, command: ReviewHeldGift) -> GiftResult:
    now = context.now
    require_role(command.actor, Role.ADMIN)
    parameters: Parameters = {"gift": command.gift_id, "approve": command.approve, "reason": command.reason}

    def apply() -> GiftResult:
        gift = uow.gift(command.gift_id)
        pending = uow.unresolved_pending(gift_id=command.gift_id) if gift else []
        if gift is None or not pending:
            raise FailedPrecondition("the gift is not waiting for review", reason="GIFT_NOT_HELD",
                                     metadata={"gift": command.gift_id})
        ids = [entry.transfer_id for entry in pending]
        sequence = 0
        if pending[0].timeout is not None and now >= pending[0].timeout:
            uow.resolve(command.request_id, ids, Phase.EXPIRE_PENDING, now)
            state = GiftState.EXPIRED
        elif command.approve:
            uow.resolve(command.request_id, ids, Phase.POST_PENDING, now)
            state, sequence = GiftState.POSTED, deliver_gift(context, uow, gift)
        else:
            uow.resolve(command.request_id, ids, Phase.VOID_PENDING, now)
            state = GiftState.REJECTED
        audit(uow, context, command, Outcome.APPLIED, gift_transfer_name(gift.creator, gift.live_id, gift.gift_id),
              reason=command.reason or state, details={"state": state})
        return GiftResult(gift.gift_id, gift.live_id, gift.creator, gift.catalog_gift, gift.count, state,
                          gift.coins, gift.fee_coins, gift.diamonds, gift.hold_reasons, sequence, gift.sent_at,
                          available(uow, Account.of_user(gift.sender, Purpose.COINS)))

    return run_once(uow, request_id=command.request_id, operation="ReviewHeldGift", caller=command.actor.subject,
                    parameters=parameters, now=now, result_type=GiftResult, apply=apply)
