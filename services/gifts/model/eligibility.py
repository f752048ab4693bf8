"""Who may go LIVE, buy, send and receive gifts, and cash out.

Age and country come from the verified token (`Principal`). The other facts (followers,
standing, the account category, identity verification, when the account joined) belong
to services that do not exist yet, so they sit behind `EligibilityFacts`; the gifts store
keeps an admin-settable copy (AccountStandingService) until an owner takes them over.

Each requirement has one reason, shared by the refusal and by GetLiveEligibility.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass
from typing import Protocol

from libs.auth.principal import Principal
from libs.errors import FailedPrecondition, PermissionDenied
from services.gifts.model.names import user_name


class AccountCategory(enum.StrEnum):
    PERSONAL = "PERSONAL"
    BUSINESS = "BUSINESS"
    POLITICAL = "POLITICAL"  # may not receive gifts
    GOVERNMENT = "GOVERNMENT"  # may not receive gifts


@dataclass(frozen=True)
class AccountFacts:
    user_id: str
    follower_count: int = 0
    good_standing: bool = True
    restriction_reason: str = ""
    category: str = AccountCategory.PERSONAL
    identity_verified: bool = False
    # When the user joined the platform; None means unknown, and the gifts service then
    # counts from the day it first saw the user (the opening of their coin account).
    joined_at: dt.datetime | None = None


class EligibilityFacts(Protocol):
    def account_facts(self, user_id: str) -> AccountFacts:
        """The facts on record, or the defaults for a user nobody has described yet."""
        ...


@dataclass(frozen=True)
class Requirement:
    reason: str  # the refusal's ErrorInfo reason when unmet
    met: bool
    facts: dict[str, str]

    @property
    def detail(self) -> str:
        return " ".join(f"{name}={value}" for name, value in self.facts.items())


def require_adult(principal: Principal, today: dt.date, *, reason: str) -> None:
    """Buying, sending and receiving gifts, going LIVE and cashing out are 18+ only.

    An unknown age counts as a minor (`Principal.is_adult_on`).
    """
    if not principal.is_adult_on(today):
        raise PermissionDenied("only users of 18 and over may do this", reason=reason)


def require_good_standing(facts: AccountFacts) -> None:
    if not facts.good_standing:
        raise FailedPrecondition(f"{user_name(facts.user_id)} is not in good standing",
                                 reason="ACCOUNT_NOT_IN_GOOD_STANDING",
                                 metadata={"restriction_reason": facts.restriction_reason})


def gifts_barred_reason(facts: AccountFacts) -> str:
    """Why this account may not receive gifts now, or '' if it may."""
    if facts.category in (AccountCategory.POLITICAL, AccountCategory.GOVERNMENT):
        return f"{facts.category}_ACCOUNT"
    if not facts.good_standing:
        return "ACCOUNT_NOT_IN_GOOD_STANDING"
    return ""


def live_requirements(facts: AccountFacts, *, min_followers: int, is_adult: bool | None) -> list[Requirement]:
    """Every requirement for going LIVE, met or not; `is_adult` None when the age is not known here."""
    return [
        Requirement("CREATOR_UNDER_18", bool(is_adult),
                    {"adult": "unknown" if is_adult is None else str(is_adult).lower()}),
        Requirement("TOO_FEW_FOLLOWERS", facts.follower_count >= min_followers,
                    {"follower_count": str(facts.follower_count), "required": str(min_followers)}),
        Requirement("ACCOUNT_NOT_IN_GOOD_STANDING", facts.good_standing,
                    {"restriction_reason": facts.restriction_reason or "NONE"}),
    ]


@dataclass(frozen=True)
class LiveEligibility:
    """Whether a creator may go LIVE and receive gifts, with every requirement and how it stands."""

    can_go_live: bool
    can_receive_gifts: bool
    requirements: list[Requirement]


def live_eligibility(facts: AccountFacts, *, min_followers: int, is_adult: bool | None) -> LiveEligibility:
    """GetLiveEligibility's answer: the LIVE requirements, then whether gifts are barred."""
    requirements = live_requirements(facts, min_followers=min_followers, is_adult=is_adult)
    barred = gifts_barred_reason(facts)
    can_go_live = all(requirement.met for requirement in requirements)
    gifts = Requirement("GIFTS_DISABLED", not barred, {"why": barred or "NONE"})
    return LiveEligibility(can_go_live, can_go_live and not barred, [*requirements, gifts])


def require_live_eligible(principal: Principal, facts: AccountFacts, *, min_followers: int, today: dt.date) -> None:
    require_adult(principal, today, reason="CREATOR_UNDER_18")
    for requirement in live_requirements(facts, min_followers=min_followers, is_adult=True):
        if not requirement.met:
            raise FailedPrecondition(f"cannot go LIVE: {requirement.detail}", reason=requirement.reason,
                                     metadata=requirement.facts)
