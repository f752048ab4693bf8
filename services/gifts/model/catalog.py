"""The gift catalog and the coin packs: published prices, configuration not code.

A gift's price is read once, when it is sent, and stored with the gift, so changing the
catalog never rewrites history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from libs.errors import NotFound
from services.gifts.model.names import catalog_gift_name


@dataclass(frozen=True)
class CatalogGift:
    gift_id: str
    display_name: str
    coins: int

    def __post_init__(self) -> None:
        if self.coins < 1:
            raise ValueError(f"gift {self.gift_id} must cost at least one coin")


@dataclass(frozen=True)
class CoinPack:
    """What a payment provider sells: `coins` for `price_eur_cents`."""

    pack_id: str
    coins: int
    price_eur_cents: int

    def __post_init__(self) -> None:
        if self.coins < 1 or self.price_eur_cents < 1:
            raise ValueError(f"coin pack {self.pack_id} needs positive coins and price")


class Catalog:
    def __init__(self, gifts: Iterable[CatalogGift], packs: Iterable[CoinPack]) -> None:
        self._gifts = {gift.gift_id: gift for gift in gifts}
        self._packs = {pack.pack_id: pack for pack in packs}

    @property
    def gifts(self) -> list[CatalogGift]:
        return sorted(self._gifts.values(), key=lambda gift: (gift.coins, gift.gift_id))

    @property
    def packs(self) -> list[CoinPack]:
        return sorted(self._packs.values(), key=lambda pack: (pack.coins, pack.pack_id))

    def gift(self, gift_id: str) -> CatalogGift:
        try:
            return self._gifts[gift_id]
        except KeyError:
            raise NotFound(f"no gift {gift_id!r} in the catalog", resource_name=catalog_gift_name(gift_id),
                           reason="GIFT_NOT_IN_CATALOG") from None

    def pack(self, pack_id: str) -> CoinPack | None:
        return self._packs.get(pack_id)


# About EUR 0.0105-0.0139 a coin, cheaper in bigger packs (BRIEF §4).
DEFAULT_COIN_PACKS = (
    CoinPack("coins-100", 100, 139),
    CoinPack("coins-500", 500, 649),
    CoinPack("coins-1000", 1_000, 1_249),
    CoinPack("coins-5000", 5_000, 5_999),
    CoinPack("coins-10000", 10_000, 10_999),
    CoinPack("coins-20000", 20_000, 20_999),
)

DEFAULT_GIFTS = (
    CatalogGift("rose", "Rose", 1),
    CatalogGift("finger-heart", "Finger Heart", 5),
    CatalogGift("doughnut", "Doughnut", 30),
    CatalogGift("hat-and-mustache", "Hat and Mustache", 99),
    CatalogGift("galaxy", "Galaxy", 1_000),
    CatalogGift("lion", "Lion", 29_999),
)
