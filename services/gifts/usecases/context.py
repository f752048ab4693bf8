"""What a use case may use besides its unit of work, and the checks every use case shares."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from libs.auth.principal import Principal, Role
from libs.errors import PermissionDenied
from services.gifts.config import GiftsConfig
from services.gifts.model.audit import AuditEvent, AuditOutbox, Outcome
from services.gifts.model.ids import uuid7
from services.gifts.model.ledger import Account, Ledger
from services.gifts.model.names import TransactionIds, transaction_name
from services.gifts.model.payments import PaymentProvider

SYSTEM_ACTOR = "services/gifts"


@dataclass(frozen=True)
class LedgerSetup:
    """What every call's context shares: the published policy, the payment providers and the
    deployment's transaction ids. A runner holds one and stamps each command's context with
    the call's clock."""

    config: GiftsConfig
    payments: Mapping[str, PaymentProvider]
    transaction_ids: TransactionIds
    mint_id: Callable[[dt.datetime], str] = uuid7

    def at(self, now: dt.datetime) -> Context:
        return Context(self.config, self.payments, self.transaction_ids, now, self.mint_id)


@dataclass(frozen=True)
class Context:
    """The published policy, the payment providers, and the moment the call was made.

    `now` is the caller's clock as stamped on the call (the ledger process decides with
    its parent's notion of now, which tests move); ids are minted from it.
    """

    config: GiftsConfig
    payments: Mapping[str, PaymentProvider]
    transaction_ids: TransactionIds
    now: dt.datetime
    mint_id: Callable[[dt.datetime], str] = uuid7

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise ValueError("the clock must return aware datetimes")

    @property
    def today(self) -> dt.date:
        return self.now.astimezone(dt.UTC).date()

    def new_id(self) -> str:
        return self.mint_id(self.now)

    def transaction_name(self, user: str, transfer_id: int) -> str:
        return transaction_name(user, self.transaction_ids.public(transfer_id))


def user_of(principal: Principal) -> str:
    user = principal.user_id
    if not user:
        raise PermissionDenied("this call is made by or for a user", reason="USER_REQUIRED")
    return user


def require_role(principal: Principal, *roles: Role) -> None:
    if not principal.has_role(*roles):
        raise PermissionDenied("the caller lacks the role for this call", reason="ROLE_REQUIRED",
                               metadata={"roles": ",".join(sorted(roles))})


def available(ledger: Ledger, account: Account) -> int:
    balance = ledger.balance(account)
    return balance.available if balance else 0


class ActingCommand(Protocol):
    """A command made by a caller, under the caller's request id."""

    @property
    def actor(self) -> Principal: ...

    @property
    def request_id(self) -> str: ...


def audit(outbox: AuditOutbox, context: Context, command: ActingCommand, outcome: Outcome, resource: str, *,
          reason: str = "", details: dict[str, str] | None = None) -> None:
    """Record what `command` did (or why not) to `resource`, an API resource name."""
    outbox.record_audit(AuditEvent(type(command).__name__, command.actor.subject, outcome, command.request_id,
                                   resource, context.now, reason, details or {}))
