"""What ListGifts publishes is what every SendGift moves (issue 16), and receipts from the future."""

from __future__ import annotations

import datetime as dt
import tempfile
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from libs.errors import FailedPrecondition
from services.gifts.config import GiftsConfig
from services.gifts.conftest import START, Harness, adult, build_harness
from services.gifts.messages import catalog_gift, gift_rates
from services.gifts.model.catalog import Catalog, CatalogGift, CoinPack
from services.gifts.model.eligibility import AccountFacts
from services.gifts.model.ledger import GiftRates
from services.gifts.model.payments import Purchase
from services.gifts.usecases.commands import SendGift, TopUpCoins

BANK = CoinPack("bank", 400_000_000, 1)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(price=st.integers(1, 30_000), count=st.integers(1, 10_000), fee_basis_points=st.integers(0, 10_000),
       diamonds_per_share_coin=st.integers(1, 5))
def test_every_send_gift_adds_up_to_the_published_figures(price: int, count: int, fee_basis_points: int,
                                                          diamonds_per_share_coin: int) -> None:
    rates = GiftRates(fee_basis_points, diamonds_per_share_coin, 2)
    config = GiftsConfig(rates=rates, catalog=Catalog([CatalogGift("token", "Token", price)], [BANK]))
    published = catalog_gift(config.catalog.gift("token"), rates)
    assert gift_rates(rates).rounding == "PER_GIFT_FEE_ROUNDED_DOWN"
    with tempfile.TemporaryDirectory() as root:
        harness = build_harness(Path(root), config)
        try:
            live = harness.go_live("carol")
            harness.set_facts(AccountFacts("alice", joined_at=START - dt.timedelta(days=400)))
            harness.top_up("alice", BANK.pack_id)
            result = harness.run(SendGift(adult("alice"), str(uuid.uuid4()), live.live_id, "token", count))
            assert (result.coins, result.fee_coins, result.diamonds) == (
                count * published.coin_price, count * published.platform_fee_coins, count * published.diamond_value)
            with harness.reader.database.reading() as connection:
                moved = dict(connection.execute(
                    "SELECT code, SUM(amount) FROM transfer WHERE gift_id = ? GROUP BY code", (result.gift_id,)))
            expected = {"GIFT_FEE": result.fee_coins, "GIFT_SHARE": result.coins - result.fee_coins,
                        "GIFT_DIAMONDS": result.diamonds}
            assert moved == {code: amount for code, amount in expected.items() if amount}
            assert result.coins_available == BANK.coins - result.coins
        finally:
            harness.close()


def test_two_finger_hearts_credit_twice_the_published_diamonds(harness: Harness) -> None:
    published = catalog_gift(harness.config.catalog.gift("finger-heart"), harness.config.rates)
    assert (published.coin_price, published.platform_fee_coins, published.diamond_value) == (5, 2, 6)
    live = harness.go_live("carol")
    harness.top_up("alice")
    result = harness.run(SendGift(adult("alice"), str(uuid.uuid4()), live.live_id, "finger-heart", 2))
    assert (result.coins, result.fee_coins, result.diamonds) == (10, 4, 12)


def top_up_dated(harness: Harness, purchased_at: dt.datetime) -> None:
    pack = harness.config.catalog.pack("coins-100")
    assert pack is not None
    receipt = harness.provider.issue_receipt(Purchase(str(uuid.uuid4()), "alice", pack.pack_id, pack.coins,
                                                      pack.price_eur_cents, purchased_at))
    harness.run(TopUpCoins(adult("alice"), str(uuid.uuid4()), pack.pack_id, "local", receipt))


def test_a_receipt_dated_in_the_future_is_refused_beyond_the_clock_skew(harness: Harness) -> None:
    skew = harness.config.receipt_clock_skew
    with pytest.raises(FailedPrecondition) as refused:
        top_up_dated(harness, harness.clock() + skew + dt.timedelta(seconds=1))
    assert (refused.value.reason, refused.value.metadata["why"]) == ("RECEIPT_REJECTED", "PURCHASED_IN_FUTURE")
    top_up_dated(harness, harness.clock() + skew)  # a provider clock a little ahead is fine


def test_each_session_numbers_its_feed_from_one(harness: Harness) -> None:
    first, second = harness.go_live("carol"), harness.go_live("dave")
    harness.top_up("alice")
    sequences: dict[str, list[int]] = {first.live_id: [], second.live_id: []}
    for live in (first, second, second, first, second, first):
        result = harness.run(SendGift(adult("alice"), str(uuid.uuid4()), live.live_id, "rose", 1))
        sequences[live.live_id].append(result.sequence)
    assert sequences == {first.live_id: [1, 2, 3], second.live_id: [1, 2, 3]}
    assert [item.sequence for item in harness.reader.feed(second.live_id, after_sequence=1, limit=10)] == [2, 3]
