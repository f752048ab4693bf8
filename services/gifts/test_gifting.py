"""The gifts use cases end to end over a real store: every rule, every refusal."""

from __future__ import annotations

import dataclasses
import datetime as dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from libs.audit.events import AuditEvent, Outcome
from libs.auth.principal import Principal
from libs.errors import (
    AlreadyExists,
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
)
from services.gifts.config import GiftsConfig, PayoutPolicy
from services.gifts.conftest import ADMIN, ON_BOTH_ENGINES, PAYMENTS_SERVICE, Harness, adult, build_harness, minor
from services.gifts.model.eligibility import AccountCategory, AccountFacts
from services.gifts.model.ledger import Purpose
from services.gifts.model.live import LiveState
from services.gifts.model.payments import LocalPaymentProvider, Purchase
from services.gifts.model.records import GiftState, PayoutResult, PayoutState
from services.gifts.model.views import Party
from services.gifts.usecases.commands import (
    EndLive,
    GiftResult,
    RequestPayout,
    ReversalKind,
    ReverseTopUp,
    ReviewHeldGift,
    SendGift,
    SettlePayout,
    StartLive,
    TopUpCoins,
    TopUpResult,
)

HOLD = PayoutPolicy().diamond_hold


def send(h: Harness, user: str | Principal, live_id: str, gift: str = "doughnut", count: int = 1,
         request_id: str | None = None) -> GiftResult:
    sender = adult(user) if isinstance(user, str) else user
    command = SendGift(sender, request_id or str(uuid.uuid4()), live_id, gift, count)
    return h.submit(command).result()


def refusal(call: Callable[..., object], *args: object, **kwargs: object) -> DomainError:
    with pytest.raises(DomainError) as raised:
        call(*args, **kwargs)
    return raised.value


def audit_log(h: Harness) -> list[AuditEvent]:
    """The events waiting in the outbox, as compliance will get them."""
    return [traced.event for traced in h.outbox.pending(10_000)]


# LIVE sessions -------------------------------------------------------------------------------


def test_an_adult_with_enough_followers_goes_live(harness: Harness) -> None:
    session = harness.go_live("carol")
    assert session.state_at(harness.clock()) is LiveState.LIVE
    assert session.gifts_barred_reason == ""


def test_going_live_needs_the_configured_followers(harness: Harness) -> None:
    harness.set_facts(AccountFacts("carol", follower_count=999))
    error = refusal(harness.submit(StartLive(adult("carol"), _id(), "t", "t")).result)
    assert isinstance(error, FailedPrecondition) and error.reason == "TOO_FEW_FOLLOWERS"
    assert error.metadata == {"follower_count": "999", "required": "1000"}


def test_a_minor_cannot_go_live(harness: Harness) -> None:
    harness.set_facts(AccountFacts("kid", follower_count=50_000))
    error = refusal(harness.submit(StartLive(minor("kid"), _id(), "t", "t")).result)
    assert isinstance(error, PermissionDenied) and error.reason == "CREATOR_UNDER_18"


def test_an_account_in_bad_standing_cannot_go_live(harness: Harness) -> None:
    error = refusal(harness.go_live, "carol", good_standing=False, restriction_reason="STRIKES")
    assert (error.reason, error.metadata) == ("ACCOUNT_NOT_IN_GOOD_STANDING", {"restriction_reason": "STRIKES"})


@ON_BOTH_ENGINES
def test_a_host_has_one_open_live_at_a_time(harness: Harness) -> None:
    first = harness.go_live("carol")
    error = refusal(harness.go_live, "carol")
    assert error.reason == "ALREADY_LIVE" and error.metadata["live"] == first.name


def test_a_live_ends_by_itself_at_its_maximum_duration(harness: Harness) -> None:
    first = harness.go_live("carol")
    harness.top_up("alice")
    harness.clock.advance(harness.config.live.max_duration)
    assert refusal(send, harness, "alice", first.live_id).reason == "LIVE_NOT_ACTIVE"
    second = harness.go_live("carol")  # the overdue session is closed on the way
    ended = harness.reader.live(first.live_id)
    assert ended is not None and ended.end_reason == "MAX_DURATION_REACHED"
    assert ended.ended_at == first.deadline
    assert send(harness, "alice", second.live_id).state == GiftState.POSTED


def test_only_the_host_or_an_admin_ends_a_live(harness: Harness) -> None:
    session = harness.go_live("carol")
    assert refusal(harness.submit(EndLive(adult("mallory"), session.live_id)).result).reason == \
        "NOT_LIVE_HOST"
    ended = harness.submit(EndLive(adult("carol"), session.live_id)).result()
    assert ended.end_reason == "ENDED_BY_CREATOR"
    harness.top_up("alice")
    assert refusal(send, harness, "alice", session.live_id).reason == "LIVE_NOT_ACTIVE"


def test_a_political_account_may_go_live_but_not_receive_gifts(harness: Harness) -> None:
    session = harness.go_live("mayor", category=AccountCategory.POLITICAL)
    assert session.gifts_barred_reason == "POLITICAL_ACCOUNT"
    harness.top_up("alice")
    error = refusal(send, harness, "alice", session.live_id)
    assert (error.reason, error.metadata["why"]) == ("GIFTS_DISABLED", "POLITICAL_ACCOUNT")


def test_a_host_marked_political_during_a_live_stops_receiving_gifts(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("alice")
    send(harness, "alice", session.live_id)
    harness.set_facts(AccountFacts("carol", follower_count=5_000, category=AccountCategory.GOVERNMENT))
    error = refusal(send, harness, "alice", session.live_id)
    assert (error.reason, error.metadata["why"]) == ("GIFTS_DISABLED", "GOVERNMENT_ACCOUNT")


# Top-ups -------------------------------------------------------------------------------------


def _id() -> str:
    return str(uuid.uuid4())


def _top_up(h: Harness, principal: Principal, receipt: str, request_id: str | None = None,
            pack_id: str = "coins-1000", provider: str = "local") -> TopUpResult:
    command = TopUpCoins(principal, request_id or _id(), pack_id, provider, receipt)
    return h.submit(command).result()


def test_a_top_up_credits_coins_and_books_the_payment(harness: Harness) -> None:
    result = _top_up(harness, adult("alice"), harness.receipt("alice", "coins-500"), pack_id="coins-500")
    assert result.coins_available == 500
    assert harness.reader.wallet("alice").available(Purpose.COINS) == 500
    with harness.reader.database.reading() as connection:
        cash = connection.execute("SELECT credits_posted FROM account WHERE name = 'platform/accounts/cash'")
        assert cash.fetchone()[0] == 649


def test_a_minor_cannot_buy_coins(harness: Harness) -> None:
    error = refusal(_top_up, harness, minor("kid"), harness.receipt("kid"))
    assert isinstance(error, PermissionDenied) and error.reason == "BUYER_UNDER_18"


def test_a_receipt_signed_by_another_key_is_refused(harness: Harness) -> None:
    forger = LocalPaymentProvider.with_signing_key(Ed25519PrivateKey.generate())
    forged = forger.issue_receipt(Purchase("r-forged", "alice", "coins-1000", 1_000, 1_249,
                                           harness.clock()))
    error = refusal(_top_up, harness, adult("alice"), forged)
    assert isinstance(error, FailedPrecondition)
    assert (error.reason, error.metadata) == ("RECEIPT_REJECTED", {"why": "SIGNATURE_INVALID"})


@pytest.mark.parametrize("mangle", [lambda r: r.replace(".", ""), lambda r: "x" + r, lambda r: r[:-3] + "AAA",
                                    lambda r: "e30." + r.split(".")[1]])
def test_a_mangled_receipt_is_refused(harness: Harness, mangle: Callable[[str], str]) -> None:
    error = refusal(_top_up, harness, adult("alice"), mangle(harness.receipt("alice")))
    assert error.reason == "RECEIPT_REJECTED" and error.metadata["why"] in {"MALFORMED", "SIGNATURE_INVALID"}
    assert harness.reader.wallet("alice").available(Purpose.COINS) == 0


def test_a_receipt_for_someone_else_is_refused(harness: Harness) -> None:
    assert refusal(_top_up, harness, adult("mallory"), harness.receipt("alice")).reason == "RECEIPT_NOT_FOR_CALLER"


@ON_BOTH_ENGINES
def test_a_receipt_is_redeemed_once(harness: Harness) -> None:
    receipt = harness.receipt("alice")
    _top_up(harness, adult("alice"), receipt)
    assert refusal(_top_up, harness, adult("alice"), receipt).reason == "RECEIPT_ALREADY_REDEEMED"
    assert harness.reader.wallet("alice").available(Purpose.COINS) == 1_000


def test_a_receipt_must_match_a_published_pack(harness: Harness) -> None:
    cheap = harness.provider.issue_receipt(Purchase("r-cheap", "alice", "coins-1000", 1_000, 1,
                                                    harness.clock()))
    assert refusal(_top_up, harness, adult("alice"), cheap).metadata == {"why": "PACK_MISMATCH"}
    other_pack = refusal(_top_up, harness, adult("alice"), harness.receipt("alice"), None, "coins-100")
    assert other_pack.metadata == {"why": "PACK_MISMATCH"}
    unknown = refusal(_top_up, harness, adult("alice"), harness.receipt("alice"), None, "coins-1000", "stripe")
    assert unknown.metadata == {"why": "UNKNOWN_PROVIDER"}


def test_an_old_receipt_is_refused(harness: Harness) -> None:
    receipt = harness.receipt("alice")
    harness.clock.advance(harness.config.receipt_max_age + dt.timedelta(seconds=1))
    assert refusal(_top_up, harness, adult("alice"), receipt).metadata == {"why": "EXPIRED"}


# Gifts ---------------------------------------------------------------------------------------


def test_a_gift_pays_the_fee_and_puts_the_creator_diamonds_on_hold(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("alice")
    # 198 coins; issue 16 made the split per gift (99 coins: fee 49, share 50, 100 diamonds), as published
    result = send(harness, "alice", session.live_id, "hat-and-mustache", 2)
    assert (result.state, result.coins, result.diamonds, result.coins_available) == (GiftState.POSTED, 198, 200, 802)
    carol = harness.reader.wallet("carol")
    assert carol.available(Purpose.DIAMONDS_ON_HOLD) == 200 and carol.available(Purpose.DIAMONDS) == 0
    with harness.reader.database.reading() as connection:
        fees = dict(connection.execute("SELECT name, credits_posted FROM account WHERE name IN "
                                       "('platform/accounts/gift-fees', 'platform/accounts/creator-share')"))
    assert fees == {"platform/accounts/gift-fees": 98, "platform/accounts/creator-share": 100}


def test_a_minor_cannot_send_gifts(harness: Harness) -> None:
    session = harness.go_live("carol")
    error = refusal(send, harness, minor("kid"), session.live_id)
    assert isinstance(error, PermissionDenied) and error.reason == "SENDER_UNDER_18"


@ON_BOTH_ENGINES
def test_a_gift_needs_enough_coins_and_a_refusal_leaves_no_trace_in_the_ledger(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("alice", "coins-100")
    error = refusal(send, harness, "alice", session.live_id, "galaxy")
    assert isinstance(error, FailedPrecondition) and error.reason == "INSUFFICIENT_COINS"
    assert error.metadata == {"account": "users/alice/accounts/coins", "available": "100", "required": "1000"}
    assert harness.reader.wallet("carol").available(Purpose.DIAMONDS_ON_HOLD) == 0
    assert harness.reader.feed(session.live_id, after_sequence=0, limit=10) == []


def test_a_viewer_who_never_bought_coins_cannot_gift(harness: Harness) -> None:
    session = harness.go_live("carol")
    assert refusal(send, harness, "alice", session.live_id).reason == "INSUFFICIENT_COINS"


def test_an_unknown_gift_or_count_is_refused(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("alice")
    assert isinstance(refusal(send, harness, "alice", session.live_id, "unicorn"), NotFound)
    error = refusal(send, harness, "alice", session.live_id, "rose", 0)
    assert isinstance(error, InvalidArgument) and error.violations[0].field == "count"


def test_a_retry_with_the_same_request_id_applies_once(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("alice")
    request_id = str(uuid.uuid4())
    first = send(harness, "alice", session.live_id, request_id=request_id)
    harness.clock.advance(dt.timedelta(seconds=5))
    again = send(harness, "alice", session.live_id, request_id=request_id)
    assert again == first
    assert harness.reader.wallet("alice").available(Purpose.COINS) == 970


def test_a_retry_is_answered_even_after_the_live_ended(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("alice")
    request_id = str(uuid.uuid4())
    first = send(harness, "alice", session.live_id, request_id=request_id)
    harness.submit(EndLive(adult("carol"), session.live_id)).result()
    assert send(harness, "alice", session.live_id, request_id=request_id) == first


def test_the_same_request_id_with_other_parameters_is_refused_with_details(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("alice")
    request_id = str(uuid.uuid4())
    send(harness, "alice", session.live_id, "doughnut", 1, request_id=request_id)
    error = refusal(send, harness, "alice", session.live_id, "doughnut", 2, request_id)
    assert isinstance(error, AlreadyExists) and error.reason == "REQUEST_ID_REUSED"
    assert error.metadata == {"request_id": request_id, "first_operation": "SendGift", "differing_fields": "count"}
    # Another caller learns nothing about the first request.
    harness.top_up("bob")
    other = refusal(send, harness, "bob", session.live_id, "doughnut", 1, request_id)
    assert other.metadata == {"request_id": request_id}
    assert harness.reader.wallet("alice").available(Purpose.COINS) == 970
    assert harness.reader.wallet("bob").available(Purpose.COINS) == 1_000


def test_a_request_id_is_not_reusable_across_operations(harness: Harness) -> None:
    session = harness.go_live("carol")
    request_id = str(uuid.uuid4())
    _top_up(harness, adult("alice"), harness.receipt("alice"), request_id)
    error = refusal(send, harness, "alice", session.live_id, "doughnut", 1, request_id)
    assert error.reason == "REQUEST_ID_REUSED" and error.metadata["first_operation"] == "TopUpCoins"


# Fraud rules ---------------------------------------------------------------------------------


def test_a_host_cannot_gift_their_own_live(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("carol")
    assert refusal(send, harness, "carol", session.live_id).reason == "SELF_GIFTING"


def test_too_many_gifts_in_a_minute_are_refused(tmp_path: Path) -> None:
    h = build_harness(tmp_path, GiftsConfig(fraud=dataclasses.replace(GiftsConfig().fraud, max_gifts_per_window=3)))
    session = h.go_live("carol")
    h.top_up("alice")
    for _ in range(3):
        send(h, "alice", session.live_id, "rose")
    error = refusal(send, h, "alice", session.live_id, "rose")
    assert isinstance(error, ResourceExhausted) and error.reason == "GIFT_VELOCITY_EXCEEDED"
    assert error.metadata == {"limit": "3", "window_seconds": "60"}
    h.clock.advance(dt.timedelta(minutes=1))
    assert send(h, "alice", session.live_id, "rose").state == GiftState.POSTED
    h.close()


@ON_BOTH_ENGINES
def test_gifts_going_round_a_small_ring_are_held(harness: Harness) -> None:
    lives = {user: harness.go_live(user).live_id for user in ("ann", "ben", "cat")}
    for user in lives:
        harness.top_up(user)
    assert send(harness, "ann", lives["ben"]).state == GiftState.POSTED
    assert send(harness, "ben", lives["cat"]).state == GiftState.POSTED
    closing = send(harness, "cat", lives["ann"])
    assert (closing.state, closing.hold_reasons) == (GiftState.HELD, "CIRCULAR_GIFTING")
    # Held coins are reserved, not spent; the creator sees nothing yet.
    assert harness.reader.wallet("cat").available(Purpose.COINS) == 970
    assert harness.reader.wallet("ann").available(Purpose.DIAMONDS_ON_HOLD) == 0
    assert harness.reader.feed(lives["ann"], after_sequence=0, limit=10) == []


def test_a_new_account_sending_a_large_amount_is_held(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("newbie", "coins-5000")
    held = send(harness, "newbie", session.live_id, "galaxy", 5)
    assert (held.state, held.hold_reasons) == (GiftState.HELD, "NEW_ACCOUNT_LARGE_AMOUNT")
    harness.set_facts(AccountFacts("veteran", joined_at=harness.clock() - dt.timedelta(days=400)))
    harness.top_up("veteran", "coins-5000")
    assert send(harness, "veteran", session.live_id, "galaxy", 5).state == GiftState.POSTED


def _held_gift(h: Harness) -> tuple[str, GiftResult, str]:
    """A new account's large gift, held for review: (live, gift, the top-up that paid for it)."""
    session = h.go_live("carol")
    top_up_id = h.top_up("newbie", "coins-5000")
    return session.live_id, send(h, "newbie", session.live_id, "galaxy", 5), top_up_id


def test_an_approved_held_gift_reaches_the_creator(harness: Harness) -> None:
    live_id, held, _ = _held_gift(harness)
    review = ReviewHeldGift(ADMIN, str(uuid.uuid4()), held.gift_id, approve=True)
    assert harness.submit(review).result().state == GiftState.POSTED
    assert harness.reader.wallet("carol").available(Purpose.DIAMONDS_ON_HOLD) == 5_000
    assert harness.reader.wallet("newbie").available(Purpose.COINS) == 0
    assert [item.gift.gift_id for item in harness.reader.feed(live_id, after_sequence=0, limit=10)] == [held.gift_id]
    again = ReviewHeldGift(ADMIN, str(uuid.uuid4()), held.gift_id, approve=False)
    assert refusal(harness.submit(again).result).reason == "GIFT_NOT_HELD"


@ON_BOTH_ENGINES
def test_a_rejected_held_gift_returns_the_coins(harness: Harness) -> None:
    _, held, _ = _held_gift(harness)
    review = ReviewHeldGift(ADMIN, str(uuid.uuid4()), held.gift_id, approve=False)
    assert harness.submit(review).result().state == GiftState.REJECTED
    assert harness.reader.wallet("newbie").available(Purpose.COINS) == 5_000
    assert harness.reader.wallet("carol").available(Purpose.DIAMONDS_ON_HOLD) == 0


def test_an_unreviewed_held_gift_expires_and_returns_the_coins(harness: Harness) -> None:
    _, held, _ = _held_gift(harness)
    harness.clock.advance(harness.config.held_gift_review_timeout)
    assert harness.sweep().result().pending_expired == 3
    assert harness.reader.wallet("newbie").available(Purpose.COINS) == 5_000
    state = harness.reader.gift_state(held.gift_id)
    assert state is not None and state[1] is GiftState.EXPIRED
    review = ReviewHeldGift(ADMIN, str(uuid.uuid4()), held.gift_id, approve=True)
    assert refusal(harness.submit(review).result).reason == "GIFT_NOT_HELD"


def test_only_an_admin_reviews_held_gifts(harness: Harness) -> None:
    _, held, _ = _held_gift(harness)
    review = ReviewHeldGift(adult("carol"), str(uuid.uuid4()), held.gift_id, approve=True)
    assert refusal(harness.submit(review).result).reason == "ROLE_REQUIRED"


# Payouts -------------------------------------------------------------------------------------


def _earn(h: Harness, creator: str, lions: int) -> None:
    """Give the creator 30,000 diamonds per Lion (29,999 coins), from veteran fans."""
    session = h.go_live(creator, identity_verified=True)
    for index in range(lions):
        fan = f"fan{index}"
        h.set_facts(AccountFacts(fan, joined_at=h.clock() - dt.timedelta(days=400)))
        h.top_up(fan, "coins-20000")
        h.top_up(fan, "coins-10000")
        send(h, fan, session.live_id, "lion")


def _payout(h: Harness, principal: Principal, eur_cents: int) -> PayoutResult:
    """Pay out `eur_cents` worth of diamonds (two a cent)."""
    return h.submit(RequestPayout(principal, _id(), eur_cents * 2)).result()


def test_diamonds_become_withdrawable_only_after_the_hold(harness: Harness) -> None:
    _earn(harness, "carol", 1)
    assert refusal(_payout, harness, adult("carol"), 5_000).reason == "INSUFFICIENT_AVAILABLE_DIAMONDS"
    harness.clock.advance(HOLD)
    payout = _payout(harness, adult("carol"), 5_000)
    assert (payout.state, payout.eur_cents, payout.diamonds) == (PayoutState.PENDING, 5_000, 10_000)
    wallet = harness.reader.wallet("carol")
    assert (wallet.available(Purpose.DIAMONDS), wallet.reserved(Purpose.DIAMONDS)) == (20_000, 10_000)


@ON_BOTH_ENGINES
def test_a_paid_payout_posts_and_a_failed_one_returns_the_diamonds(harness: Harness) -> None:
    _earn(harness, "carol", 1)
    harness.clock.advance(HOLD)
    paid = _payout(harness, adult("carol"), 5_000)
    failed = _payout(harness, adult("carol"), 5_000)
    assert harness.submit(SettlePayout(PAYMENTS_SERVICE, str(uuid.uuid4()), paid.payout_id,
                                                    paid=True)).result().state == PayoutState.POSTED
    voided = harness.submit(SettlePayout(PAYMENTS_SERVICE, _id(), failed.payout_id, paid=False,
                                                      failure_reason="ACCOUNT_CLOSED")).result()
    assert (voided.state, voided.void_reason) == (PayoutState.VOIDED, "ACCOUNT_CLOSED")
    wallet = harness.reader.wallet("carol")
    assert (wallet.available(Purpose.DIAMONDS), wallet.reserved(Purpose.DIAMONDS)) == (20_000, 0)
    same_again = SettlePayout(PAYMENTS_SERVICE, _id(), paid.payout_id, paid=True)
    assert harness.submit(same_again).result().state == PayoutState.POSTED
    other_way = SettlePayout(PAYMENTS_SERVICE, _id(), paid.payout_id, paid=False, failure_reason="BOUNCED")
    assert refusal(harness.submit(other_way).result).reason == "PAYOUT_ALREADY_SETTLED"


def test_an_unsettled_payout_expires(harness: Harness) -> None:
    _earn(harness, "carol", 1)
    harness.clock.advance(HOLD)
    payout = _payout(harness, adult("carol"), 5_000)
    harness.clock.advance(PayoutPolicy().settlement_timeout)
    harness.sweep().result()
    expired = harness.reader.payout(payout.payout_id)
    assert expired is not None and (expired.state, expired.void_reason) == (PayoutState.VOIDED, "EXPIRED")
    assert harness.reader.wallet("carol").available(Purpose.DIAMONDS) == 30_000


@pytest.mark.parametrize("facts, principal, eur_cents, reason", [
    ({"identity_verified": False}, adult("carol"), 5_000, "IDENTITY_NOT_VERIFIED"),
    ({}, minor("carol"), 5_000, "CREATOR_UNDER_18"),
    ({}, adult("carol"), 4_999, "BELOW_PAYOUT_MINIMUM"),
    ({"good_standing": False}, adult("carol"), 5_000, "ACCOUNT_NOT_IN_GOOD_STANDING"),
])
def test_payout_refusals(harness: Harness, facts: dict[str, Any], principal: Principal, eur_cents: int,
                         reason: str) -> None:
    _earn(harness, "carol", 1)
    harness.clock.advance(HOLD)
    harness.set_facts(AccountFacts("carol", **{"identity_verified": True, **facts}))
    assert refusal(_payout, harness, principal, eur_cents).reason == reason


def test_payouts_respect_the_daily_limit(harness: Harness) -> None:
    _earn(harness, "carol", 20)  # 600,000 diamonds: EUR 3,000
    harness.clock.advance(HOLD)
    _payout(harness, adult("carol"), 150_000)
    error = refusal(_payout, harness, adult("carol"), 50_001)
    assert error.reason == "DAILY_PAYOUT_LIMIT_EXCEEDED"
    assert error.metadata == {"daily_limit_eur_cents": "200000", "already_requested_eur_cents": "150000"}
    _payout(harness, adult("carol"), 50_000)
    harness.clock.advance(dt.timedelta(days=1))
    _payout(harness, adult("carol"), 50_000)


# Refunds and chargebacks ---------------------------------------------------------------------


def _reverse(h: Harness, top_up_id: str, kind: ReversalKind = ReversalKind.CHARGEBACK) -> dict[str, object]:
    command = ReverseTopUp(PAYMENTS_SERVICE, str(uuid.uuid4()), top_up_id, kind)
    return dataclasses.asdict(h.submit(command).result())


def test_a_refund_claws_back_unspent_coins(harness: Harness) -> None:
    top_up_id = harness.top_up("alice")
    harness.top_up("alice", "coins-100")
    result = _reverse(harness, top_up_id, ReversalKind.REFUND)
    assert (result["coins_clawed_back"], result["coins_unrecovered"]) == (1_000, 0)
    assert harness.reader.wallet("alice").available(Purpose.COINS) == 100
    assert refusal(_reverse, harness, top_up_id).reason == "TOP_UP_ALREADY_REVERSED"


@ON_BOTH_ENGINES
def test_a_chargeback_of_spent_coins_reverses_gifts_still_on_hold(harness: Harness) -> None:
    session = harness.go_live("carol")
    top_up_id = harness.top_up("alice")
    kept = send(harness, "alice", session.live_id, "galaxy", 1)  # 1000 coins: all of them
    assert kept.coins_available == 0
    result = _reverse(harness, top_up_id)
    assert result == {"top_up_id": top_up_id, "kind": "CHARGEBACK", "coins_clawed_back": 1_000, "gifts_reversed": 1,
                      "diamonds_clawed_back": 1_000, "coins_unrecovered": 0}
    assert harness.reader.wallet("carol").available(Purpose.DIAMONDS_ON_HOLD) == 0
    assert harness.reader.wallet("alice").available(Purpose.COINS) == 0
    assert harness.reader.leaderboard(party=Party.GIFTER, limit=10, live_id=session.live_id) == []
    state = harness.reader.gift_state(kept.gift_id)
    assert state is not None and state[1] is GiftState.REVERSED


def test_a_chargeback_after_the_hold_leaves_an_unrecovered_loss(harness: Harness) -> None:
    session = harness.go_live("carol")
    top_up_id = harness.top_up("alice")
    send(harness, "alice", session.live_id, "galaxy", 1)
    harness.clock.advance(HOLD)
    assert harness.sweep().result().holds_released == 1
    result = _reverse(harness, top_up_id)
    assert (result["coins_clawed_back"], result["gifts_reversed"], result["coins_unrecovered"]) == (0, 0, 1_000)
    assert harness.reader.wallet("carol").available(Purpose.DIAMONDS) == 1_000
    events = [e for e in audit_log(harness) if e.action == "gifts.ReverseTopUp"]
    assert events[-1].attributes["coins_unrecovered"] == "1000"


def test_a_chargeback_voids_held_gifts_first(harness: Harness) -> None:
    _, held, top_up_id = _held_gift(harness)
    result = _reverse(harness, top_up_id)
    assert (result["coins_clawed_back"], result["gifts_reversed"]) == (5_000, 0)
    state = harness.reader.gift_state(held.gift_id)
    assert state is not None and state[1] is GiftState.REJECTED


def test_an_unknown_top_up_cannot_be_reversed(harness: Harness) -> None:
    assert isinstance(refusal(_reverse, harness, "nope"), NotFound)


# Reading -------------------------------------------------------------------------------------


def test_the_feed_resumes_after_its_cursor_without_gaps_or_repeats(harness: Harness) -> None:
    session = harness.go_live("carol")
    other = harness.go_live("dave")
    harness.top_up("alice")
    sent = []
    for _ in range(7):
        sent.append(send(harness, "alice", session.live_id, "rose").gift_id)
        send(harness, "alice", other.live_id, "rose")
    first = harness.reader.feed(session.live_id, after_sequence=0, limit=3)
    rest = harness.reader.feed(session.live_id, after_sequence=first[-1].sequence, limit=100)
    assert [item.gift.gift_id for item in first + rest] == sent
    assert all(a.sequence < b.sequence for a, b in zip(first + rest, (first + rest)[1:], strict=False))


@ON_BOTH_ENGINES
def test_leaderboards_rank_gifters_per_stream_and_creators_per_period(harness: Harness) -> None:
    carol, dave = harness.go_live("carol"), harness.go_live("dave")
    for fan in ("alice", "bob"):
        harness.top_up(fan)
    send(harness, "alice", carol.live_id, "doughnut", 2)
    send(harness, "bob", carol.live_id, "hat-and-mustache")
    send(harness, "alice", dave.live_id, "rose")
    assert [(e.rank, e.user_id, e.amount) for e in harness.reader.leaderboard(
        party=Party.GIFTER, limit=10, live_id=carol.live_id)] == [(1, "bob", 99), (2, "alice", 60)]
    now, tick = harness.clock(), dt.timedelta(microseconds=1)
    assert [(e.user_id, e.amount) for e in harness.reader.leaderboard(  # diamonds: 60 + 100, and 2
        party=Party.CREATOR, limit=10, since=now - tick, until=now + tick)] == [("carol", 160), ("dave", 2)]
    assert harness.reader.leaderboard(party=Party.CREATOR, limit=10, since=now + tick) == []


@ON_BOTH_ENGINES
def test_the_statement_pages_newest_first(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("alice")
    for _ in range(4):
        send(harness, "alice", session.live_id, "doughnut")  # two coin legs each
    page = harness.reader.statement("alice", before_id=None, limit=5)
    rest = harness.reader.statement("alice", before_id=page[-1].entry.transfer_id, limit=5)
    ids = [line.entry.transfer_id for line in page + rest]
    assert len(ids) == 9 and ids == sorted(ids, reverse=True)


# Audit ---------------------------------------------------------------------------------------


def test_every_transfer_and_every_refusal_is_in_the_audit_outbox(harness: Harness) -> None:
    session = harness.go_live("carol")
    harness.top_up("alice")
    send(harness, "alice", session.live_id)
    refusal(send, harness, "alice", session.live_id, "lion")
    events = audit_log(harness)
    audited = sorted(int(transfer) for event in events if "transfer_ids" in event.attributes
                     for transfer in event.attributes["transfer_ids"].split(","))
    with harness.reader.database.reading() as connection:
        transfers = [row[0] for row in connection.execute("SELECT id FROM transfer ORDER BY id")]
    assert audited == transfers
    refused = [event for event in events if event.outcome is Outcome.REJECTED]
    assert [(e.action, e.reason, e.actor) for e in refused] == [("gifts.SendGift", "INSUFFICIENT_COINS", "users/alice")]
