"""The pure rules: tokens, GIVT, the hourly window, attribution choice and refund arithmetic."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from libs.errors import FailedPrecondition, InvalidArgument
from services.affiliate.model.clicks import FilterReason, GivtFilter, RecentVisitors
from services.affiliate.model.commissions import (
    CandidateClick,
    Commission,
    CommissionKind,
    CommissionState,
    clawed_back_amount,
    credited_click,
    frozen,
    net_base,
    refunded,
    unfrozen,
)
from services.affiliate.model.links import HmacKeyRing, sign_token, verify_token
from services.affiliate.model.programs import AttributionModel

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
KEYS = HmacKeyRing({"k1": b"a" * 32, "k2": b"b" * 32}, "k2", frozenset())


def test_a_token_binds_its_link_programme_and_product() -> None:
    token = sign_token(KEYS, "creators/a/trackingLinks/l", "merchants/m/programs/p", "merchants/m/products/x")
    claims = verify_token(KEYS, token)
    assert (claims.link, claims.program, claims.product, claims.key_id) == \
        ("creators/a/trackingLinks/l", "merchants/m/programs/p", "merchants/m/products/x", "k2")


# Attack cases as data: each altered token and the reason it is refused with.
TOKEN_ATTACKS = [
    (lambda t: t.replace(".k2.", ".k1."), "TOKEN_INVALID"),  # another key's id, same MAC
    (lambda t: t.replace(".k2.", ".k9."), "TOKEN_KEY_UNKNOWN"),
    (lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"), "TOKEN_INVALID"),
    (lambda t: "v2" + t[2:], "TOKEN_INVALID"),
    (lambda t: t.rsplit(".", 1)[0], "TOKEN_INVALID"),
    (lambda t: t.split(".")[0] + "." + t.split(".")[1] + ".Y3JlYXRvcnMvZXZl." + t.split(".")[3], "TOKEN_INVALID"),
]


@pytest.mark.parametrize(("alter", "reason"), TOKEN_ATTACKS)
def test_an_altered_token_is_refused_with_its_reason(alter: object, reason: str) -> None:
    token = sign_token(KEYS, "creators/a/trackingLinks/l", "merchants/m/programs/p", "")
    with pytest.raises(InvalidArgument) as refused:
        verify_token(KEYS, alter(token))  # type: ignore[operator]
    assert refused.value.violations[0].reason == reason and refused.value.violations[0].field == "token"


def test_a_retired_key_no_longer_verifies() -> None:
    token = sign_token(HmacKeyRing({"k1": b"a" * 32}, "k1"), "creators/a/trackingLinks/l", "merchants/m/programs/p", "")
    with pytest.raises(InvalidArgument) as refused:
        verify_token(HmacKeyRing({"k1": b"a" * 32, "k2": b"b" * 32}, "k2", frozenset({"k1"})), token)
    assert refused.value.violations[0].reason == "TOKEN_KEY_RETIRED"


def test_givt_reasons_in_order() -> None:
    givt = GivtFilter(data_centre_ranges=("192.0.2.0/24", "2001:db8::/32"))
    browser = "Mozilla/5.0 (Windows NT 10.0) Chrome/126"
    assert givt.reason(user_agent=browser, purpose_header="prefetch;prerender", client_ip="") is FilterReason.PREFETCH
    assert givt.reason(user_agent="Mozilla/5.0 (compatible; bingbot/2.0)", purpose_header="", client_ip="") \
        is FilterReason.BOT
    assert givt.reason(user_agent="Go-http-client/2.0", purpose_header="", client_ip="") is FilterReason.NON_BROWSER_AGENT
    assert givt.reason(user_agent=browser, purpose_header="", client_ip="2001:db8::1") is FilterReason.DATA_CENTRE_ADDRESS
    assert givt.reason(user_agent=browser, purpose_header="", client_ip="198.51.100.3") is None


def test_a_visitor_counts_once_per_link_per_hour_by_any_of_their_keys() -> None:
    recent = RecentVisitors()
    recent.remember("l", ["p:1", "v:a"], T0)
    assert recent.seen_within_window("l", ["v:a"], T0 + dt.timedelta(minutes=59))
    assert not recent.seen_within_window("l", ["v:a"], T0 + dt.timedelta(minutes=60))
    assert not recent.seen_within_window("other", ["v:a"], T0)


def _candidate(click: str, hours_before: int, program: str = "p", window_days: int = 30,
               model: AttributionModel = AttributionModel.LAST_CLICK) -> CandidateClick:
    return CandidateClick(click, f"l-{click}", "creators/c", program, T0 - dt.timedelta(hours=hours_before),
                          dt.timedelta(days=window_days), model, False, "")


def test_attribution_picks_inside_the_window_last_or_first() -> None:
    clicks = [_candidate("old", 24 * 40), _candidate("a", 48), _candidate("b", 2)]
    assert credited_click(clicks, T0).click == "b"  # type: ignore[union-attr]
    first = [dataclasses.replace(c, attribution_model=AttributionModel.FIRST_CLICK) for c in clicks]
    assert credited_click(first, T0).click == "a"  # type: ignore[union-attr]
    assert credited_click([_candidate("late", -1)], T0) is None  # after the order
    assert credited_click([_candidate("x", 25, window_days=1)], T0) is None


def _sale(base: int = 8000, order: int = 10000, rate: int = 1000,
          state: CommissionState = CommissionState.PENDING) -> Commission:
    return Commission("creators/c", "x", CommissionKind.SALE, state, "", "l", "k", "users/u/orders/o", order, base, base,
                      0, rate, base * rate // 10_000, "EUR", dt.timedelta(days=14), None, T0)


@given(st.lists(st.integers(min_value=1, max_value=2000), min_size=1, max_size=8))
def test_refunds_take_the_refunded_share_of_the_order_off_the_base(refunds: list[int]) -> None:
    sale, total = _sale(), 0
    for amount in refunds:
        if total + amount > sale.order_paid_minor:
            with pytest.raises(FailedPrecondition):
                refunded(sale, total + amount)
            return
        total += amount
        sale = refunded(sale, total)
        naive = 8000 - 8000 * total // 10000  # the reference: the same share, from the original base
        assert sale.base_amount_minor == naive and sale.amount_minor == naive * 1000 // 10000
    assert (sale.state is CommissionState.INELIGIBLE) == (total == 10000)


@given(st.integers(min_value=0, max_value=10000), st.integers(min_value=0, max_value=10000))
def test_clawbacks_after_settlement_sum_to_what_the_refunds_took(first: int, second: int) -> None:
    settled = _sale(state=CommissionState.SETTLED)
    total = min(first + second, 10000)
    step = clawed_back_amount(settled, min(first, total))
    later = dataclasses.replace(settled, refunded_paid_minor=min(first, total))
    assert step + clawed_back_amount(later, total) == settled.amount_minor - net_base(settled, total) * 1000 // 10000


def test_a_freeze_remembers_the_state_it_left_and_final_states_cannot_freeze() -> None:
    sale = _sale(state=CommissionState.SETTLED)
    assert unfrozen(frozen(sale, "CLICK_FRAUD_SUSPECTED")).state is CommissionState.SETTLED
    with pytest.raises(FailedPrecondition):
        frozen(_sale(state=CommissionState.PAID), "X")
    with pytest.raises(FailedPrecondition):
        unfrozen(sale)
