"""What the gifts ledger keeps besides its transfers: gifts, top-ups, payouts, and their states.

A gift's or a payout's state is not stored as a mutable column: it follows from the ledger
entries that name it (`current_payout`, and the store's `gift_state`), so it can never
disagree with the money.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Protocol

from services.gifts.model.ledger import Phase


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
    sent_at: dt.datetime
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
    purchased_at: dt.datetime


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
    requested_at: dt.datetime
    expires_at: dt.datetime
    pending_transfer_ids: tuple[int, ...]


@dataclass(frozen=True)
class PayoutSettlement:
    """The payment rail's word on a payout; expiry needs none (it is in the ledger)."""

    payout_id: str
    request_id: str
    paid: bool
    provider_reference: str
    failure_reason: str
    settled_at: dt.datetime


class PayoutOutcomes(Protocol):
    """What says where a payout stands: its settlement by the rail and its ledger resolution."""

    def payout_settlement(self, payout_id: str) -> PayoutSettlement | None: ...

    def payout_resolution(self, payout: Payout) -> tuple[Phase, dt.datetime] | None:
        """How and when the payout's pending transfers were resolved; None while pending."""
        ...


@dataclass(frozen=True)
class PayoutResult:
    payout_id: str
    user_id: str
    state: str  # PayoutState
    diamonds: int
    eur_cents: int
    payout_method: str
    requested_at: dt.datetime
    expires_at: dt.datetime
    void_reason: str = ""
    provider_reference: str = ""
    settled_at: dt.datetime | None = None


def payout_result(payout: Payout, state: PayoutState, settlement: PayoutSettlement | None = None,
                  *, expired_at: dt.datetime | None = None) -> PayoutResult:
    void_reason = ""
    if state is PayoutState.VOIDED:
        void_reason = (settlement.failure_reason or "FAILED") if settlement else "EXPIRED"
    settled_at = settlement.settled_at if settlement else expired_at
    return PayoutResult(payout.payout_id, payout.user_id, state, payout.diamonds, payout.eur_cents,
                        payout.payout_method, payout.requested_at, payout.expires_at, void_reason,
                        settlement.provider_reference if settlement else "", settled_at)


def current_payout(records: PayoutOutcomes, payout: Payout) -> PayoutResult:
    """Where a payout stands now: pending, posted by the rail, or voided (failed or expired)."""
    resolution = records.payout_resolution(payout)
    if resolution is None:
        return payout_result(payout, PayoutState.PENDING)
    phase, at = resolution
    settlement = records.payout_settlement(payout.payout_id)
    state = PayoutState.POSTED if phase is Phase.POST_PENDING else PayoutState.VOIDED
    return payout_result(payout, state, settlement if phase is not Phase.EXPIRE_PENDING else None,
                         expired_at=at)
