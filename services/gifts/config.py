"""Every tunable of the gifts service with its default, in one place.

Rates, prices and limits are configuration published to creators, not constants in code.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from services.gifts.catalog import DEFAULT_COIN_PACKS, DEFAULT_GIFTS, Catalog
from services.gifts.fraud import FraudPolicy
from services.gifts.ledger import GiftRates
from services.gifts.live import LivePolicy


@dataclass(frozen=True)
class PayoutPolicy:
    minimum_eur_cents: int = 5_000
    daily_limit_eur_cents: int = 200_000
    # Freshly earned diamonds wait this long before they can be paid out, so that a
    # chargeback of the coins behind them can still claw them back.
    diamond_hold: dt.timedelta = dt.timedelta(days=14)
    # A payout the rail neither confirms nor fails in this time is voided.
    settlement_timeout: dt.timedelta = dt.timedelta(days=5)


@dataclass(frozen=True)
class GiftsConfig:
    rates: GiftRates = field(default_factory=GiftRates)
    catalog: Catalog = field(default_factory=lambda: Catalog(DEFAULT_GIFTS, DEFAULT_COIN_PACKS))
    live: LivePolicy = field(default_factory=LivePolicy)
    fraud: FraudPolicy = field(default_factory=FraudPolicy)
    payouts: PayoutPolicy = field(default_factory=PayoutPolicy)
    # A gift held by a fraud rule is voided if nobody reviews it in this time.
    held_gift_review_timeout: dt.timedelta = dt.timedelta(hours=72)
    # Receipts older than this are refused (a provider's receipt is redeemed promptly).
    receipt_max_age: dt.timedelta = dt.timedelta(days=30)
