"""Every tunable of the shop, with its default, in one typed object: `ShopConfig`.

    LIMELIGHT_SHOP_MINOR_TRANSACTION_CAP   minors' per-order cap in minor units (default 5000)
    LIMELIGHT_SHOP_MINOR_MONTHLY_CAP       minors' monthly cap in minor units (default 10000)
    LIMELIGHT_SHOP_SWEEP_SECONDS           how often the sweep runs (default 1)
    LIMELIGHT_SHOP_AUDIT_SHIPPING          `on` (default); `off` keeps audit events in the outbox
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.shop.model import SpendingPolicy
from services.shop.usecases.ports import ShopRules


@dataclass(frozen=True)
class ShopConfig:
    rules: ShopRules = field(default_factory=ShopRules)
    sweep_interval: dt.timedelta = dt.timedelta(seconds=1)
    ship_audit: bool = True
    # Units of work per group commit; 1 is one durable transaction per call.
    max_batch: int = 256

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ShopConfig:
        spending = SpendingPolicy(
            per_transaction_cap_minor=int(environ.get("LIMELIGHT_SHOP_MINOR_TRANSACTION_CAP", "5000")),
            monthly_cap_minor=int(environ.get("LIMELIGHT_SHOP_MINOR_MONTHLY_CAP", "10000")))
        shipping = environ.get("LIMELIGHT_SHOP_AUDIT_SHIPPING", "on")
        if shipping not in ("on", "off"):
            raise ValueError(f"LIMELIGHT_SHOP_AUDIT_SHIPPING must be 'on' or 'off', not {shipping!r}")
        return cls(rules=ShopRules(spending=spending), ship_audit=shipping == "on",
                   sweep_interval=dt.timedelta(seconds=float(environ.get("LIMELIGHT_SHOP_SWEEP_SECONDS", "1"))))
