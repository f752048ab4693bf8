"""Cashing diamonds out, and the payment rail's word on a payout."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from libs.auth.principal import Role
from libs.errors import FailedPrecondition, InvalidArgument, NotFound
from services.gifts.model.audit import AuditOutbox, Outcome
from services.gifts.model.eligibility import EligibilityFacts, require_adult, require_good_standing
from services.gifts.model.idempotency import Parameters, RequestLog, run_once
from services.gifts.model.ledger import Account, Code, Ledger, Phase, Purpose, TransferOrder
from services.gifts.model.names import UNKNOWN, payout_name
from services.gifts.model.records import (
    Payout,
    PayoutOutcomes,
    PayoutResult,
    PayoutSettlement,
    PayoutState,
    current_payout,
    payout_result,
)
from services.gifts.usecases.commands import RequestPayout, SettlePayout
from services.gifts.usecases.context import Context, audit, require_role, user_of
from services.gifts.usecases.gifts import PendingGifts
from services.gifts.usecases.holds import HoldReleaseUnit, release_matured_holds


class Payouts(PayoutOutcomes, Protocol):
    def payout(self, payout_id: str) -> Payout | None: ...


class RequestPayoutUnit(RequestLog, EligibilityFacts, HoldReleaseUnit, Payouts, AuditOutbox, Protocol):
    def insert_payout(self, payout: Payout) -> None: ...

    def payout_cents_since(self, user_id: str, since: dt.datetime) -> int:
        """EUR cents of the user's payouts requested after `since` that were not voided or expired."""
        ...


class SettlePayoutUnit(RequestLog, Ledger, Payouts, PendingGifts, AuditOutbox, Protocol):
    def insert_payout_settlement(self, settlement: PayoutSettlement) -> None: ...


def request_payout(context: Context, uow: RequestPayoutUnit, command: RequestPayout) -> PayoutResult:
    now = context.now
    user = user_of(command.actor)
    policy = context.config.payouts
    rate = context.config.rates.diamonds_per_eur_cent
    require_adult(command.actor, context.today, reason="CREATOR_UNDER_18")
    if command.currency_code != "EUR":
        raise InvalidArgument.for_field("currency_code", "payouts are made in EUR", reason="CURRENCY_NOT_SUPPORTED")
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
        already = uow.payout_cents_since(user, now - dt.timedelta(days=1))
        if already + eur_cents > policy.daily_limit_eur_cents:
            raise FailedPrecondition(
                "the payout would exceed the daily limit", reason="DAILY_PAYOUT_LIMIT_EXCEEDED",
                metadata={"daily_limit_eur_cents": str(policy.daily_limit_eur_cents),
                          "already_requested_eur_cents": str(already)})
        release_matured_holds(uow, command.request_id, now, creator=user)
        spendable = Account.of_user(user, Purpose.DIAMONDS)
        uow.open_account(spendable, now)
        expires_at = now + policy.settlement_timeout
        transfer_ids = uow.pend(command.request_id, [
            TransferOrder(spendable, Account.platform(Purpose.DIAMOND_REDEMPTION), command.diamonds,
                          Code.PAYOUT_DIAMONDS),
            TransferOrder(Account.platform(Purpose.CASH), Account.platform(Purpose.PAYOUT_RAIL), eur_cents,
                          Code.PAYOUT_CASH),
        ], now, expires_at)
        payout = Payout(context.new_id(), command.request_id, user, eur_cents, command.diamonds,
                        command.payout_method, now, expires_at, tuple(transfer_ids))
        uow.insert_payout(payout)
        audit(uow, context, command, Outcome.APPLIED, payout_name(user, payout.payout_id),
              details={"eur_cents": str(eur_cents), "diamonds": str(command.diamonds)})
        return payout_result(payout, PayoutState.PENDING)

    return run_once(uow, request_id=command.request_id, operation="RequestPayout", caller=command.actor.subject,
                    parameters=parameters, now=now, result_type=PayoutResult, apply=apply)


def settle_payout(context: Context, uow: SettlePayoutUnit, command: SettlePayout) -> PayoutResult:
    """The payout rail reports the transfer paid (post) or failed (void).

    Settling a settled payout the same way again answers with it unchanged; the other way
    is refused. A payout past its timeout expires instead, whatever the rail says.
    """
    now = context.now
    require_role(command.actor, Role.ADMIN, Role.SERVICE)
    parameters: Parameters = {"payout": command.payout_id, "paid": command.paid,
                              "provider_reference": command.provider_reference,
                              "failure_reason": command.failure_reason}

    def apply() -> PayoutResult:
        payout = uow.payout(command.payout_id)
        if payout is None:
            name = payout_name(UNKNOWN, command.payout_id)
            raise NotFound(f"no payout {name}", resource_name=name, reason="PAYOUT_NOT_FOUND")
        pending = uow.unresolved_pending(transfer_ids=payout.pending_transfer_ids)
        if not pending:
            settled = current_payout(uow, payout)
            if settled.state != (PayoutState.POSTED if command.paid else PayoutState.VOIDED) or \
                    settled.void_reason == "EXPIRED":
                raise FailedPrecondition("the payout was already settled otherwise",
                                         reason="PAYOUT_ALREADY_SETTLED", metadata={"state": settled.state})
            return settled
        ids = [entry.transfer_id for entry in pending]
        if pending[0].timeout is not None and now >= pending[0].timeout:
            uow.resolve(command.request_id, ids, Phase.EXPIRE_PENDING, now)
        else:
            uow.resolve(command.request_id, ids, Phase.POST_PENDING if command.paid else Phase.VOID_PENDING, now)
            uow.insert_payout_settlement(PayoutSettlement(payout.payout_id, command.request_id, command.paid,
                                                          command.provider_reference, command.failure_reason,
                                                          now))
        result = current_payout(uow, payout)
        audit(uow, context, command, Outcome.APPLIED, payout_name(payout.user_id, payout.payout_id),
              reason=result.void_reason or result.state, details={"provider_reference": command.provider_reference})
        return result

    return run_once(uow, request_id=command.request_id, operation="SettlePayout", caller=command.actor.subject,
                    parameters=parameters, now=now, result_type=PayoutResult, apply=apply)
