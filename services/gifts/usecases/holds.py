"""Diamonds waiting out their hold, and their release: shared by gifts, payouts and the sweep."""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from services.gifts.model.ledger import Account, Code, Ledger, Purpose, TransferOrder
from services.gifts.model.records import SentGift

RELEASE_BATCH = 200  # gifts released per unit, so one unit never holds up a batch for long


class DiamondHolds(Protocol):
    def gift(self, gift_id: str) -> SentGift | None: ...

    def place_diamond_hold(self, gift: SentGift, matures_at: dt.datetime) -> None: ...

    def settle_diamond_hold(self, gift_id: str) -> None: ...

    def matured_holds(self, now: dt.datetime, limit: int, creator: str | None = None) -> list[str]:
        """Gift ids whose diamonds are due for release, oldest first."""
        ...


class HoldReleaseUnit(Ledger, DiamondHolds, Protocol):
    """What releasing matured diamonds touches."""


def release_matured_holds(uow: HoldReleaseUnit, request_id: str, now: dt.datetime, creator: str | None = None) -> int:
    released = 0
    for gift_id in uow.matured_holds(now, RELEASE_BATCH, creator):
        gift = uow.gift(gift_id)
        assert gift is not None
        spendable = Account.of_user(gift.creator, Purpose.DIAMONDS)
        uow.open_account(spendable, now)
        uow.post(request_id, [TransferOrder(Account.of_user(gift.creator, Purpose.DIAMONDS_ON_HOLD), spendable,
                                            gift.diamonds, Code.DIAMOND_HOLD_RELEASE, gift_id)], now)
        uow.settle_diamond_hold(gift_id)
        released += 1
    return released
