"""Merchants' affiliate programmes: rates, windows and the products they cover."""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass

from libs.errors import InvalidArgument

MIN_ATTRIBUTION_WINDOW = dt.timedelta(hours=24)
MAX_ATTRIBUTION_WINDOW = dt.timedelta(days=90)
MAX_RETURN_WINDOW = dt.timedelta(days=90)
MAX_RATE_BPS = 10_000


class AttributionModel(enum.StrEnum):
    LAST_CLICK = "LAST_CLICK"
    FIRST_CLICK = "FIRST_CLICK"


class ProgramState(enum.StrEnum):
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    ENDED = "ENDED"


@dataclass(frozen=True)
class ProgramTerms:
    """What a merchant sets: everything of a programme but its identity and times."""

    display_name: str
    products: tuple[str, ...]
    commission_rate_bps: int
    cost_per_click_minor: int
    daily_click_cap_minor: int
    currency_code: str
    attribution_window: dt.timedelta
    attribution_model: AttributionModel
    return_window: dt.timedelta
    state: ProgramState

    def check(self, merchant: str, *, field_prefix: str = "program") -> None:
        """The rules protovalidate cannot state: the products are the merchant's, a CPC has a cap."""
        for index, product in enumerate(self.products):
            if not product.startswith(f"{merchant}/products/"):
                raise InvalidArgument.for_field(f"{field_prefix}.products[{index}]",
                                                f"{product} is not a product of {merchant}",
                                                reason="PRODUCT_OF_ANOTHER_MERCHANT")
        if self.cost_per_click_minor > 0 and self.daily_click_cap_minor == 0:
            raise InvalidArgument.for_field(f"{field_prefix}.daily_click_cap_minor",
                                            "a programme that pays per click needs a daily cap per creator",
                                            reason="CPC_CAP_REQUIRED")
        if not MIN_ATTRIBUTION_WINDOW <= self.attribution_window <= MAX_ATTRIBUTION_WINDOW:
            raise InvalidArgument.for_field(f"{field_prefix}.attribution_window", "must be 24 hours to 90 days")
        if not dt.timedelta(0) <= self.return_window <= MAX_RETURN_WINDOW:
            raise InvalidArgument.for_field(f"{field_prefix}.return_window", "must be 0 to 90 days")
        if not 0 <= self.commission_rate_bps <= MAX_RATE_BPS:
            raise InvalidArgument.for_field(f"{field_prefix}.commission_rate_bps", f"must be 0..{MAX_RATE_BPS}")


@dataclass(frozen=True)
class Program:
    merchant: str
    program_id: str
    terms: ProgramTerms
    create_time: dt.datetime
    update_time: dt.datetime

    @property
    def name(self) -> str:
        return f"{self.merchant}/programs/{self.program_id}"

    @property
    def active(self) -> bool:
        return self.terms.state is ProgramState.ACTIVE

    def covers(self, product: str) -> bool:
        """Whether a sale of `product` earns commission here (no product list covers every product)."""
        if not product.startswith(f"{self.merchant}/products/"):
            return False
        return not self.terms.products or product in self.terms.products
