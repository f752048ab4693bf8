"""Buying coins with a provider's receipt, and clawing them back after a refund or chargeback."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Protocol

from libs.auth.principal import Role
from libs.errors import NotFound, PermissionDenied
from services.gifts.model.audit import AuditOutbox, Outcome
from services.gifts.model.eligibility import require_adult
from services.gifts.model.idempotency import Parameters, RequestLog, run_once
from services.gifts.model.ledger import GIFT_REVERSAL_CODES, Account, Code, Entry, Ledger, Phase, Purpose, TransferOrder
from services.gifts.model.payments import ReceiptRejected
from services.gifts.model.records import TopUp
from services.gifts.usecases.commands import ReversalResult, ReverseTopUp, TopUpCoins, TopUpResult
from services.gifts.usecases.context import Context, audit, available, require_role, user_of
from services.gifts.usecases.gifts import PendingGifts
from services.gifts.usecases.holds import DiamondHolds


class TopUps(Protocol):
    def insert_top_up(self, top_up: TopUp, now: dt.datetime) -> None:
        """Raises FailedPrecondition RECEIPT_ALREADY_REDEEMED if the receipt was used."""
        ...

    def top_up(self, top_up_id: str) -> TopUp | None: ...

    def top_up_transaction(self, top_up_id: str) -> int | None:
        """The wallet entry that credited the top-up's coins (the API names a top-up by it)."""
        ...


class TopUpUnit(RequestLog, Ledger, TopUps, AuditOutbox, Protocol):
    """What TopUpCoins touches."""


class ReverseTopUpUnit(RequestLog, Ledger, TopUps, DiamondHolds, PendingGifts, AuditOutbox, Protocol):
    def insert_top_up_reversal(self, top_up_id: str, request_id: str, kind: str, now: dt.datetime) -> None:
        """Raises FailedPrecondition TOP_UP_ALREADY_REVERSED on a second reversal."""
        ...

    def unresolved_held_gifts_of(self, sender: str) -> list[str]: ...

    def held_diamond_gifts_sent_by(self, sender: str) -> list[str]:
        """Gift ids from `sender` whose diamonds are still on hold, newest first."""
        ...

    def gift_entries(self, gift_id: str) -> list[Entry]: ...


def top_up(context: Context, uow: TopUpUnit, command: TopUpCoins) -> TopUpResult:
    now, config = context.now, context.config
    user = user_of(command.actor)
    require_adult(command.actor, context.today, reason="BUYER_UNDER_18")
    parameters: Parameters = {"pack": command.pack_id, "provider": command.provider,
                              "receipt_sha256": hashlib.sha256(command.receipt.encode()).hexdigest()}

    def apply() -> TopUpResult:
        provider = context.payments.get(command.provider)
        if provider is None:
            raise ReceiptRejected(f"no payment provider {command.provider!r}", "UNKNOWN_PROVIDER")
        purchase = provider.verify_receipt(command.receipt)
        if purchase.user_id != user:
            raise PermissionDenied("the receipt belongs to another user", reason="RECEIPT_NOT_FOR_CALLER")
        pack = config.catalog.pack(purchase.pack_id)
        if (pack is None or pack.pack_id != command.pack_id
                or (pack.coins, pack.price_eur_cents) != (purchase.coins, purchase.price_eur_cents)):
            raise ReceiptRejected("the receipt is not for this published coin pack", "PACK_MISMATCH")
        if now - purchase.purchased_at > config.receipt_max_age:
            raise ReceiptRejected("the receipt is too old to redeem", "EXPIRED")
        if purchase.purchased_at - now > config.receipt_clock_skew:
            raise ReceiptRejected("the receipt is dated in the future", "PURCHASED_IN_FUTURE")
        top_up = TopUp(context.new_id(), command.request_id, user, provider.name, purchase.receipt_id,
                       pack.pack_id, pack.coins, pack.price_eur_cents, purchase.purchased_at)
        uow.insert_top_up(top_up, now)
        coins = Account.of_user(user, Purpose.COINS)
        uow.open_account(coins, now)
        _, coins_transfer = uow.post(command.request_id, [
            TransferOrder(Account.platform(Purpose.PAYMENT_PROVIDER), Account.platform(Purpose.CASH),
                          pack.price_eur_cents, Code.TOP_UP_PAYMENT),
            TransferOrder(Account.platform(Purpose.COIN_ISSUANCE), coins, pack.coins, Code.TOP_UP_COINS),
        ], now)
        audit(uow, context, command, Outcome.APPLIED, context.transaction_name(user, coins_transfer),
              details={"coins": str(pack.coins), "price_eur_cents": str(pack.price_eur_cents),
                       "provider": provider.name, "receipt_id": purchase.receipt_id})
        return TopUpResult(top_up.top_up_id, coins_transfer, pack.coins, pack.price_eur_cents,
                           available(uow, coins), now)

    return run_once(uow, request_id=command.request_id, operation="TopUpCoins", caller=command.actor.subject,
                    parameters=parameters, now=now, result_type=TopUpResult, apply=apply)


def reverse_top_up(context: Context, uow: ReverseTopUpUnit, command: ReverseTopUp) -> ReversalResult:
    """Claw back a refunded or charged-back top-up.

    Coins come back first from what the buyer still holds: held gifts are voided, then
    the wallet is debited. If that is not enough, the buyer's gifts whose diamonds are
    still on hold are reversed whole, newest first (coins back to the buyer, diamonds
    back from the creator), and the wallet is debited again. What still cannot be
    recovered (diamonds already released) is the platform's loss, reported and audited.
    """
    now = context.now
    require_role(command.actor, Role.ADMIN, Role.SERVICE)
    parameters: Parameters = {"top_up": command.top_up_id, "kind": command.kind,
                              "provider_reference": command.provider_reference}

    def apply() -> ReversalResult:
        top_up = uow.top_up(command.top_up_id)
        transaction = uow.top_up_transaction(command.top_up_id)
        if top_up is None or transaction is None:
            raise NotFound(f"no top-up {command.top_up_id}", reason="TOP_UP_NOT_FOUND")
        uow.insert_top_up_reversal(top_up.top_up_id, command.request_id, command.kind, now)
        request_id = command.request_id
        uow.post(request_id, [TransferOrder(Account.platform(Purpose.CASH), Account.platform(Purpose.PAYMENT_PROVIDER),
                                            top_up.price_eur_cents, Code.TOP_UP_REVERSAL_PAYMENT)], now)
        coins_account = Account.of_user(top_up.user_id, Purpose.COINS)
        for gift_id in uow.unresolved_held_gifts_of(top_up.user_id):
            pending = uow.unresolved_pending(gift_id=gift_id)
            uow.resolve(request_id, [entry.transfer_id for entry in pending], Phase.VOID_PENDING, now)
        remaining = top_up.coins - _claw_back_coins(uow, request_id, coins_account, top_up.coins, now)
        gifts_reversed = diamonds_back = 0
        for held_gift_id in uow.held_diamond_gifts_sent_by(top_up.user_id) if remaining else []:
            diamonds_back += _reverse_gift(uow, request_id, held_gift_id, now)
            gifts_reversed += 1
            remaining -= _claw_back_coins(uow, request_id, coins_account, remaining, now)
            if not remaining:
                break
        audit(uow, context, command, Outcome.APPLIED, context.transaction_name(top_up.user_id, transaction),
              reason=command.kind, details={
                  "coins_unrecovered": str(remaining), "gifts_reversed": str(gifts_reversed),
                  "provider_reference": command.provider_reference})
        return ReversalResult(top_up.top_up_id, command.kind, top_up.coins - remaining, gifts_reversed,
                              diamonds_back, remaining)

    return run_once(uow, request_id=command.request_id, operation="ReverseTopUp", caller=command.actor.subject,
                    parameters=parameters, now=now, result_type=ReversalResult, apply=apply)


def _claw_back_coins(uow: Ledger, request_id: str, coins_account: Account, wanted: int, now: dt.datetime) -> int:
    taken = min(wanted, available(uow, coins_account))
    if taken > 0:
        uow.post(request_id, [TransferOrder(coins_account, Account.platform(Purpose.COIN_ISSUANCE), taken,
                                            Code.TOP_UP_CLAWBACK)], now)
    return max(taken, 0)


def _reverse_gift(uow: ReverseTopUpUnit, request_id: str, gift_id: str, now: dt.datetime) -> int:
    """Undo a posted gift whose diamonds are still on hold; returns the diamonds taken back."""
    legs = [entry for entry in uow.gift_entries(gift_id)
            if entry.code in GIFT_REVERSAL_CODES and entry.phase in (Phase.POSTED, Phase.POST_PENDING)]
    uow.post(request_id, [
        TransferOrder(Account.parse(entry.credit_account), Account.parse(entry.debit_account), entry.amount,
                      GIFT_REVERSAL_CODES[entry.code], gift_id)
        for entry in legs
    ], now)
    uow.settle_diamond_hold(gift_id)
    return sum(entry.amount for entry in legs if entry.code is Code.GIFT_DIAMONDS)
