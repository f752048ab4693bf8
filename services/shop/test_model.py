"""The shop's pure rules against naive references: VAT, pro-rata refunds, the state machine."""

from __future__ import annotations

import datetime as dt
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.errors import FailedPrecondition
from services.shop.model import (
    TRANSITIONS,
    Funding,
    LivePin,
    OrderLine,
    OrderState,
    ProductType,
    Purchase,
    SpendingPolicy,
    merged_needs,
    purchase_rules,
    tax_included,
)


@given(st.integers(min_value=0, max_value=10**10), st.integers(min_value=0, max_value=10_000))
def test_vat_inside_a_gross_amount_is_the_exact_share_rounded_half_up(total: int, rate: int) -> None:
    exact = Fraction(total * rate, 10_000 + rate)
    assert tax_included(total, rate) == int(exact + Fraction(1, 2))  # floor(x + 1/2): half up


@given(st.integers(min_value=1, max_value=10**8), st.integers(min_value=1, max_value=100),
       st.lists(st.integers(min_value=1, max_value=100), max_size=20))
def test_refunds_in_any_steps_are_pro_rata_and_add_up_to_the_line_total(total: int, quantity: int,
                                                                        steps: list[int]) -> None:
    line = OrderLine("merchants/m/products/p", "v", "t", quantity, total // quantity or 1, 0, total, 0, False, ())
    refunded, amount = 0, 0
    for step in steps:
        units = min(step, quantity - refunded)
        if units == 0:
            break
        amount += line.paid_for(refunded + units) - line.paid_for(refunded)
        refunded += units
        assert amount <= total and abs(Fraction(amount) - Fraction(total * refunded, quantity)) < 1
    if refunded == quantity:
        assert amount == total


def test_no_transition_leaves_a_final_state_and_every_state_is_reachable_from_created() -> None:
    assert TRANSITIONS[OrderState.CANCELLED] == TRANSITIONS[OrderState.REFUNDED] == frozenset()
    seen, frontier = {OrderState.CREATED}, [OrderState.CREATED]
    while frontier:
        for following in TRANSITIONS[frontier.pop()]:
            if following not in seen:
                seen.add(following)
                frontier.append(following)
    assert seen == set(OrderState)


def test_needs_are_merged_per_variant_in_one_order_so_transactions_lock_rows_alike() -> None:
    assert merged_needs([("b", 1), ("a", 2), ("b", 3)]) == (("a", 2), ("b", 4))


POLICY = SpendingPolicy(per_transaction_cap_minor=5_000, monthly_cap_minor=10_000)


@pytest.mark.parametrize(("age", "total", "spent", "consent", "outcome"), [
    (30, 1_000_000, 0, False, False),
    (17, 5_000, 5_000, False, False),       # exactly at both caps
    (17, 5_001, 0, False, "MINOR_TRANSACTION_CAP_EXCEEDED"),
    (17, 4_000, 6_001, False, "MINOR_MONTHLY_CAP_EXCEEDED"),
    (17, 9_000, 9_000, True, True),         # above the caps with consent: capture needs it still
    (7, 100, 0, False, False),
    (6, 100, 0, True, "BUYER_UNDER_7"),
    (None, 100, 0, False, "BUYER_AGE_UNKNOWN"),
])
def test_minors_rules(age: int | None, total: int, spent: int, consent: bool, outcome: bool | str) -> None:
    purchase = Purchase(age, total, "EUR", Funding.DEBIT, frozenset({ProductType.PHYSICAL}))
    if isinstance(outcome, str):
        with pytest.raises(FailedPrecondition) as raised:
            purchase_rules(purchase, spent_this_month=spent, consent=consent, policy=POLICY)
        assert raised.value.reason == outcome
    else:
        assert purchase_rules(purchase, spent_this_month=spent, consent=consent, policy=POLICY) is outcome


def test_a_flash_price_holds_only_inside_its_window() -> None:
    start = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
    pin = LivePin("ada", "l1", "p1", "merchants/m/products/p", "EUR", "Werbung", start, 500,
                  end_time=start + dt.timedelta(minutes=5))
    assert pin.flash_price_at(start - dt.timedelta(seconds=1)) is None
    assert pin.flash_price_at(start) == 500
    assert pin.flash_price_at(start + dt.timedelta(minutes=5)) is None
