"""Who may go LIVE, buy, send and receive gifts, and cash out.

Age and country come from the verified token (`Principal`). The other facts (followers,
standing, political or government account, identity check, account age) belong to
services that do not exist yet, so they sit behind `EligibilityFacts`; the gifts store
keeps an admin-settable copy until an owner takes them over.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Protocol

from libs.auth.principal import Principal
from libs.errors import FailedPrecondition, PermissionDenied


@dataclass(frozen=True)
class AccountFacts:
    user_id: str
    follower_count: int = 0
    good_standing: bool = True
    political_or_government: bool = False
    identity_verified: bool = False
    # When the user joined the platform; None means unknown, and the gifts service then
    # counts from the day it first saw the user (the opening of their coin account).
    joined_at_us: int | None = None


class EligibilityFacts(Protocol):
    def account_facts(self, user_id: str) -> AccountFacts:
        """The facts on record, or the defaults for a user nobody has described yet."""
        ...


def require_adult(principal: Principal, today: dt.date, *, action: str) -> None:
    """Buying, sending and receiving gifts, going LIVE and cashing out are 18+ only."""
    if not principal.is_adult_on(today):
        raise PermissionDenied(
            f"{action} is only open to adults",
            reason="MINOR_NOT_ALLOWED",
            metadata={"action": action},
        )


def require_good_standing(facts: AccountFacts, *, action: str) -> None:
    if not facts.good_standing:
        raise FailedPrecondition(f"users/{facts.user_id} is not in good standing",
                                 reason="ACCOUNT_NOT_IN_GOOD_STANDING", metadata={"action": action})


def require_followers(facts: AccountFacts, minimum: int) -> None:
    if facts.follower_count < minimum:
        raise FailedPrecondition(
            f"going LIVE needs {minimum} followers",
            reason="NOT_ENOUGH_FOLLOWERS",
            metadata={"followers": str(facts.follower_count), "required": str(minimum)},
        )


def gifts_barred_reason(facts: AccountFacts) -> str:
    """Why this account may not receive gifts now, or '' if it may."""
    if facts.political_or_government:
        return "POLITICAL_ACCOUNT_CANNOT_RECEIVE_GIFTS"
    if not facts.good_standing:
        return "ACCOUNT_NOT_IN_GOOD_STANDING"
    return ""
