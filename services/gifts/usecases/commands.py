"""What callers ask of the gifts ledger (commands) and what it answers (results).

A command names its result type (`Command[R]`), so a runner that takes a `SendGift`
is typed to answer a `GiftResult`. Commands and results are plain frozen values: they
cross the pipe to the ledger process, and results are stored with their request id and
replayed as they were on a retry.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from libs.auth.principal import Principal
from services.gifts.model.eligibility import AccountFacts
from services.gifts.model.live import LiveSession
from services.gifts.model.records import PayoutResult

R = TypeVar("R")


class Command(Generic[R]):
    """A request to change the ledger, answered with an R once it is durable."""


@dataclass(frozen=True)
class TopUpResult:
    top_up_id: str
    coins_transfer_id: int  # the wallet's credit entry, which names the top-up to callers
    coins: int
    price_eur_cents: int
    coins_available: int
    created_at: dt.datetime


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
    sent_at: dt.datetime
    coins_available: int


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


@dataclass(frozen=True)
class StartLive(Command[LiveSession]):
    actor: Principal
    request_id: str
    sealed_title: str  # sealed under the host's data key before the command is built
    title_fingerprint: str  # libs.privacy's keyed digest of the title: a retry must name the same one
    max_duration: dt.timedelta | None = None  # capped by the platform's maximum


@dataclass(frozen=True)
class EndLive(Command[LiveSession]):
    actor: Principal
    live_id: str
    request_id: str = ""


@dataclass(frozen=True)
class UpdateAccountFacts(Command[AccountFacts]):
    """Change some facts of one account (the others keep their recorded values)."""

    actor: Principal
    user_id: str
    changes: dict[str, Any]
    request_id: str = ""


@dataclass(frozen=True)
class TopUpCoins(Command[TopUpResult]):
    actor: Principal
    request_id: str
    pack_id: str
    provider: str
    receipt: str


@dataclass(frozen=True)
class SendGift(Command[GiftResult]):
    actor: Principal
    request_id: str
    live_id: str
    gift_id: str
    count: int
    host: str | None = None  # when the caller named the LIVE with its host, the host it named
    # In a co-hosted session, the host the viewer chose (the room checked they co-host it).
    recipient: str | None = None


@dataclass(frozen=True)
class ReviewHeldGift(Command[GiftResult]):
    actor: Principal
    request_id: str
    gift_id: str
    approve: bool
    reason: str = ""


@dataclass(frozen=True)
class RequestPayout(Command[PayoutResult]):
    actor: Principal
    request_id: str
    diamonds: int
    currency_code: str = "EUR"
    payout_method: str = "default"


@dataclass(frozen=True)
class SettlePayout(Command[PayoutResult]):
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
class ReverseTopUp(Command[ReversalResult]):
    actor: Principal
    request_id: str
    top_up_id: str
    kind: ReversalKind
    provider_reference: str = ""


# The commands a caller makes; their refusals are audited.
CallerCommand = (StartLive | EndLive | UpdateAccountFacts | TopUpCoins | SendGift | ReviewHeldGift | RequestPayout
                 | SettlePayout | ReverseTopUp)
CALLER_COMMANDS = (StartLive, EndLive, UpdateAccountFacts, TopUpCoins, SendGift, ReviewHeldGift, RequestPayout,
                   SettlePayout, ReverseTopUp)


@dataclass(frozen=True)
class Sweep(Command[SweepResult]):
    """The service's own time-driven work, under a fresh request id."""

    request_id: str


@dataclass(frozen=True)
class RecordDenial(Command[None]):
    """A refusal the use cases never saw (the kit's authentication or role check, an
    ownership check in a handler), recorded as an audit event."""

    method: str  # the RPC, e.g. "SendGift"
    actor: str  # the caller's subject, or the service's own when nobody was authenticated
    resource: str  # the API resource it was refused on
    reason: str
    details: dict[str, str] = field(default_factory=dict)
