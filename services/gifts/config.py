"""Every tunable of the gifts service, with its default, in one typed object: `GiftsConfig`.

Rates, prices and limits are configuration published to creators, not constants in code.
How the service runs comes from the environment (`GiftsConfig.from_environment`):

    LIMELIGHT_GIFTS_LEDGER           `process` (default): the use cases run in a ledger process
                                     of their own (`ledger_process.py` says why);
                                     `in-process`: on this process's committer thread (one core)
    LIMELIGHT_GIFTS_AUDIT_SHIPPING   `on` (default); `off` leaves audit events in the outbox,
                                     durable, until shipping is on again (while compliance is
                                     down for maintenance, say)
    LIMELIGHT_GIFTS_SWEEP_SECONDS    how often the sweep runs (default 1)
    LIMELIGHT_GIFTS_ROOM_BUS         where LIVE rooms' events travel between replicas: empty
                                     (default) keeps them in this process; a `redis://host:port/db`
                                     URL uses Redis Streams there (`room_bus.py`; the platform
                                     starts a redis-server when this names its own port)
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.gifts.model.catalog import DEFAULT_COIN_PACKS, DEFAULT_GIFTS, Catalog
from services.gifts.model.fraud import FraudPolicy
from services.gifts.model.ledger import GiftRates
from services.gifts.model.live import LivePolicy
from services.gifts.model.room import RoomPolicy


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
    # A receipt dated later than now by more than this is refused: the provider's clock and
    # ours may disagree a little, a purchase cannot happen in the future.
    receipt_clock_skew: dt.timedelta = dt.timedelta(minutes=5)
    # How the service runs (see the module docstring).
    ledger_in_process: bool = False
    ship_audit: bool = True
    sweep_interval: dt.timedelta = dt.timedelta(seconds=1)
    # A dead ledger process is restarted after this (doubling while it fails to start).
    ledger_restart_delay: dt.timedelta = dt.timedelta(seconds=0.5)
    # LIVE rooms: chat, moderation, Q&A (`model/room.py`); the bus between replicas (see above).
    room: RoomPolicy = field(default_factory=RoomPolicy)
    room_bus_url: str = ""

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> GiftsConfig:
        ledger = environ.get("LIMELIGHT_GIFTS_LEDGER", "process")
        if ledger not in ("process", "in-process"):
            raise ValueError(f"LIMELIGHT_GIFTS_LEDGER must be 'process' or 'in-process', not {ledger!r}")
        shipping = environ.get("LIMELIGHT_GIFTS_AUDIT_SHIPPING", "on")
        if shipping not in ("on", "off"):
            raise ValueError(f"LIMELIGHT_GIFTS_AUDIT_SHIPPING must be 'on' or 'off', not {shipping!r}")
        sweep = float(environ.get("LIMELIGHT_GIFTS_SWEEP_SECONDS", "1"))
        room_bus = environ.get("LIMELIGHT_GIFTS_ROOM_BUS", "")
        if room_bus and not room_bus.startswith(("redis://", "unix://")):
            raise ValueError(f"LIMELIGHT_GIFTS_ROOM_BUS must be empty or a redis:// URL, not {room_bus!r}")
        return cls(ledger_in_process=ledger == "in-process", ship_audit=shipping == "on",
                   sweep_interval=dt.timedelta(seconds=sweep), room_bus_url=room_bus)
