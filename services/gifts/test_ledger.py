"""The pure parts of the ledger: account naming, transfer legs, the gift split."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.gifts.model.ledger import (
    PLATFORM_ACCOUNTS,
    Account,
    Code,
    Currency,
    GiftRates,
    Purpose,
    TransferOrder,
    gift_orders,
    split_gift,
)


def test_accounts_are_named_as_resources_and_parse_back() -> None:
    coins = Account.of_user("alice", Purpose.COINS)
    assert coins.name == "users/alice/accounts/coins"
    assert Account.parse(coins.name) == coins
    assert Account.platform(Purpose.PAYMENT_PROVIDER).name == "external/accounts/payment-provider"


def test_only_platform_issuers_and_counterparties_may_go_negative() -> None:
    negative = {account.name for account in PLATFORM_ACCOUNTS if account.may_go_negative}
    assert negative == {"platform/accounts/coin-issuance", "platform/accounts/diamond-issuance",
                        "platform/accounts/cash", "external/accounts/payment-provider"}
    assert not any(Account.of_user("u", purpose).may_go_negative
                   for purpose in (Purpose.COINS, Purpose.DIAMONDS_ON_HOLD, Purpose.DIAMONDS))


def test_a_user_cannot_hold_a_platform_account() -> None:
    with pytest.raises(ValueError):
        Account.of_user("alice", Purpose.COIN_ISSUANCE)


@pytest.mark.parametrize("debit, credit, amount", [
    (Account.of_user("a", Purpose.COINS), Account.of_user("a", Purpose.COINS), 1),
    (Account.of_user("a", Purpose.COINS), Account.of_user("b", Purpose.DIAMONDS), 1),
    (Account.of_user("a", Purpose.COINS), Account.of_user("b", Purpose.COINS), 0),
])
def test_a_transfer_needs_two_accounts_one_currency_and_a_positive_amount(debit: Account, credit: Account,
                                                                          amount: int) -> None:
    with pytest.raises(ValueError):
        TransferOrder(debit, credit, amount, Code.GIFT_FEE)


def test_a_gift_splits_into_fee_share_and_diamonds() -> None:
    assert split_gift(99, GiftRates()) == split_gift(99, GiftRates(5_000, 2, 2))
    split = split_gift(99, GiftRates())
    assert (split.fee_coins, split.share_coins, split.diamonds) == (49, 50, 100)  # rounding favours the creator


@given(coins=st.integers(1, 10**9), fee=st.integers(0, 10_000), per_coin=st.integers(1, 5))
def test_a_gift_split_never_creates_or_loses_coins(coins: int, fee: int, per_coin: int) -> None:
    split = split_gift(coins, GiftRates(fee, per_coin, 2))
    assert split.fee_coins + split.share_coins == coins
    assert split.diamonds == split.share_coins * per_coin
    legs = gift_orders("v", "c", split, "g")
    coin_legs = [leg for leg in legs if leg.currency is Currency.COIN]
    assert sum(leg.amount for leg in coin_legs) == coins
    assert all(leg.debit == Account.of_user("v", Purpose.COINS) for leg in coin_legs)
    assert all(leg.amount > 0 for leg in legs)
