"""The gifts use cases: one function per use case, of (context, unit of work, command).

Each runs as one unit of work of the store's group commit: it reads, decides and writes
inside one savepoint of a durable batch, so everything it checks still holds when it
writes, and its effect commits whole or not at all. Each module declares the narrow unit
of work its use cases need (`SendGiftUnit`, ...); the store's unit satisfies them all.

A refusal is a `DomainError`: the store rolls the unit back and `record_refusal` leaves
the refusal's audit event in the same batch, naming the API resource it was refused on.
Money moves only through `Ledger` (see `model/ledger.py` for the invariants), and only
inside `run_once`, so a request id has one effect.

`unit_of_work` is the one entry point: both runners (`runner.py`) submit what it gives them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from libs.errors import DomainError
from services.gifts.model.audit import AuditEvent, AuditOutbox, Outcome
from services.gifts.model.live import LiveSession
from services.gifts.model.names import (
    UNKNOWN,
    creator_name,
    gift_transfer_name,
    live_name,
    payout_name,
    payouts_parent,
    standing_name,
    transaction_name,
    wallet_name,
)
from services.gifts.model.records import SentGift, TopUp
from services.gifts.usecases.coins import ReverseTopUpUnit, TopUpUnit, reverse_top_up, top_up
from services.gifts.usecases.commands import (
    CALLER_COMMANDS,
    CallerCommand,
    Command,
    EndLive,
    RecordDenial,
    RequestPayout,
    ReverseTopUp,
    ReviewHeldGift,
    SendGift,
    SettlePayout,
    StartLive,
    Sweep,
    TopUpCoins,
    UpdateAccountFacts,
)
from services.gifts.usecases.context import Context, audit
from services.gifts.usecases.gifts import ReviewHeldGiftUnit, SendGiftUnit, review_held_gift, send_gift
from services.gifts.usecases.live import (
    EndLiveUnit,
    StartLiveUnit,
    UpdateAccountFactsUnit,
    end_live,
    start_live,
    update_account_facts,
)
from services.gifts.usecases.payouts import Payouts, RequestPayoutUnit, SettlePayoutUnit, request_payout, settle_payout
from services.gifts.usecases.sweep import SweepUnit, sweep

R = TypeVar("R")


class RefusalUnit(Payouts, AuditOutbox, Protocol):
    def live(self, live_id: str) -> LiveSession | None: ...

    def gift(self, gift_id: str) -> SentGift | None: ...

    def top_up(self, top_up_id: str) -> TopUp | None: ...

    def top_up_transaction(self, top_up_id: str) -> int | None: ...


class LedgerUnit(StartLiveUnit, EndLiveUnit, UpdateAccountFactsUnit, TopUpUnit, ReverseTopUpUnit, SendGiftUnit,
                 ReviewHeldGiftUnit, RequestPayoutUnit, SettlePayoutUnit, SweepUnit, RefusalUnit, Protocol):
    """What a runner hands `execute`: a unit of work that can serve any use case."""


def record_denial(context: Context, uow: AuditOutbox, command: RecordDenial) -> None:
    uow.record_audit(AuditEvent(command.method, command.actor, Outcome.DENIED, "", command.resource,
                                context.now, command.reason, dict(command.details)))


_USE_CASES: dict[type[Command[Any]], Callable[[Context, Any, Any], Any]] = {
    StartLive: start_live, EndLive: end_live, UpdateAccountFacts: update_account_facts, TopUpCoins: top_up,
    SendGift: send_gift, ReviewHeldGift: review_held_gift, RequestPayout: request_payout,
    SettlePayout: settle_payout, ReverseTopUp: reverse_top_up, Sweep: sweep, RecordDenial: record_denial,
}
def execute(context: Context, uow: LedgerUnit, command: Command[R]) -> R:
    result: R = _USE_CASES[type(command)](context, uow, command)
    return result


def unit_of_work(context: Context, command: Command[R]
                 ) -> tuple[Callable[[LedgerUnit], R], Callable[[LedgerUnit, DomainError], None] | None]:
    """What a runner submits to the store for `command`: the unit that executes it, and the
    recorder of its refusal (none for the service's own bookkeeping)."""

    def work(uow: LedgerUnit) -> R:
        return execute(context, uow, command)

    # The service's own bookkeeping (the sweep, a denial's record) is no caller's refusal to audit.
    if not isinstance(command, CALLER_COMMANDS):
        return work, None
    asked = command

    def refused(uow: LedgerUnit, error: DomainError) -> None:
        record_refusal(context, uow, asked, error)

    return work, refused


def record_refusal(context: Context, uow: RefusalUnit, command: CallerCommand, error: DomainError) -> None:
    """The refusal's audit event, written after the refused unit rolled back."""
    details = dict(error.metadata)
    if isinstance(command, SendGift):
        details.update(live=command.live_id, gift=command.gift_id, count=str(command.count))
    audit(uow, context, command, Outcome.REFUSED, refused_resource(context, uow, command), reason=error.reason,
          details=details)


def refused_resource(context: Context, uow: RefusalUnit, command: CallerCommand) -> str:
    """The API resource a command was refused on; `-` stands for a parent nobody could find."""
    caller = command.actor.user_id or UNKNOWN
    match command:
        case StartLive():
            return creator_name(caller)
        case EndLive() | SendGift():
            host = command.host if isinstance(command, SendGift) else None
            session = uow.live(command.live_id)
            if session is not None and host in (None, session.host):
                return session.name
            return live_name(host or UNKNOWN, command.live_id)
        case ReviewHeldGift():
            gift = uow.gift(command.gift_id)
            if gift is None:
                return gift_transfer_name(UNKNOWN, UNKNOWN, command.gift_id)
            return gift_transfer_name(gift.creator, gift.live_id, gift.gift_id)
        case SettlePayout():
            payout = uow.payout(command.payout_id)
            return payout_name(payout.user_id if payout else UNKNOWN, command.payout_id)
        case ReverseTopUp():
            found = uow.top_up(command.top_up_id)
            transaction = uow.top_up_transaction(command.top_up_id)
            if found is None or transaction is None:
                return transaction_name(UNKNOWN, UNKNOWN)
            return context.transaction_name(found.user_id, transaction)
        case UpdateAccountFacts():
            return standing_name(command.user_id)
        case TopUpCoins():
            return wallet_name(caller)
        case RequestPayout():
            return payouts_parent(caller)
