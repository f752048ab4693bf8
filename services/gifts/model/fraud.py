"""Fraud rules for gifts, each with a stated reason.

A rule either rejects a gift (it never happens, the coins stay put) or holds it: the
coins and diamonds move as pending transfers that a reviewer posts or voids, and that
void themselves when the review times out.

    rule                         verdict   reason
    sender is the LIVE host      REJECT    SELF_GIFTING
    too many gifts in a window   REJECT    GIFT_VELOCITY_EXCEEDED
    gifts go round a small ring  HOLD      CIRCULAR_GIFTING
    new account, large amounts   HOLD      NEW_ACCOUNT_LARGE_AMOUNT

Rejected top-up receipts are refused where they are checked (`payments.py`) and audited.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Protocol

from libs.errors import FailedPrecondition, ResourceExhausted


@dataclass(frozen=True)
class FraudPolicy:
    velocity_window: dt.timedelta = dt.timedelta(minutes=1)
    max_gifts_per_window: int = 60
    # A ring: the recipient (or someone the recipient gifted) gifted the sender recently.
    ring_window: dt.timedelta = dt.timedelta(hours=24)
    max_ring_size: int = 3
    new_account_age: dt.timedelta = dt.timedelta(days=7)
    new_account_window: dt.timedelta = dt.timedelta(hours=24)
    new_account_large_coins: int = 5_000

    def __post_init__(self) -> None:
        if self.max_ring_size < 2:
            raise ValueError("a gifting ring has at least two members")


class Verdict(enum.StrEnum):
    ALLOW = "ALLOW"
    HOLD = "HOLD"
    REJECT = "REJECT"


@dataclass(frozen=True)
class Assessment:
    verdict: Verdict
    reasons: tuple[str, ...] = ()


class GiftHistory(Protocol):
    """What the rules need to know about gifts already recorded."""

    def gifts_sent_since(self, sender: str, since: dt.datetime) -> tuple[int, int]:
        """(number of gifts, coins) sent by `sender` after `since`, held ones included."""
        ...

    def gifting_path_exists(self, from_user: str, to_user: str, max_hops: int, since: dt.datetime) -> bool:
        """Whether gifts sent after `since` lead from `from_user` to `to_user` in at most `max_hops`."""
        ...


def assess_gift(history: GiftHistory, policy: FraudPolicy, *, sender: str, recipient: str, coins: int,
                now: dt.datetime, sender_joined_at: dt.datetime) -> Assessment:
    """Judge one gift before it moves money. Rejections win over holds; every hold reason is kept."""
    if sender == recipient:
        return Assessment(Verdict.REJECT, ("SELF_GIFTING",))
    recent, _ = history.gifts_sent_since(sender, now - policy.velocity_window)
    if recent >= policy.max_gifts_per_window:
        return Assessment(Verdict.REJECT, ("GIFT_VELOCITY_EXCEEDED",))
    reasons = []
    # The new gift closes a ring if gifts already lead from the recipient back to the sender.
    if history.gifting_path_exists(recipient, sender, policy.max_ring_size - 1,
                                   now - policy.ring_window):
        reasons.append("CIRCULAR_GIFTING")
    if now - sender_joined_at < policy.new_account_age:
        _, coins_sent = history.gifts_sent_since(sender, now - policy.new_account_window)
        if coins_sent + coins >= policy.new_account_large_coins:
            reasons.append("NEW_ACCOUNT_LARGE_AMOUNT")
    return Assessment(Verdict.HOLD, tuple(reasons)) if reasons else Assessment(Verdict.ALLOW)


def rejection_error(assessment: Assessment, policy: FraudPolicy) -> FailedPrecondition | ResourceExhausted:
    reason = assessment.reasons[0]
    if reason == "GIFT_VELOCITY_EXCEEDED":
        return ResourceExhausted(
            "too many gifts in a short time",
            reason=reason,
            metadata={"limit": str(policy.max_gifts_per_window),
                      "window_seconds": str(int(policy.velocity_window.total_seconds()))},
        )
    return FailedPrecondition("a creator cannot send gifts to their own LIVE", reason=reason)
