"""Who is calling: the typed principal a handler receives once the kit has verified the token.

Pure data, no crypto and no gRPC, so domain code can take a `Principal` as an argument.
"""

from __future__ import annotations

import datetime as dt
import enum
from dataclasses import dataclass, field


class Role(enum.StrEnum):
    VIEWER = "viewer"
    CREATOR = "creator"
    MERCHANT = "merchant"
    COMPLIANCE_OFFICER = "compliance_officer"
    SERVICE = "service"
    ADMIN = "admin"


class AgeBracket(enum.StrEnum):
    """Coarse age when the exact birth date is not shared (German contract-law thresholds)."""

    UNKNOWN = "unknown"
    UNDER_7 = "under_7"
    FROM_7_TO_15 = "7_15"
    FROM_16_TO_17 = "16_17"
    ADULT = "18_plus"


@dataclass(frozen=True)
class Principal:
    """A verified caller.

    `subject` is a resource name: `users/{user}` or `services/{service}`. A service acting
    for a user carries that user in `on_behalf_of`, so both identities reach the handler.

    `service` is the verified service identity, never read off the subject's shape: the
    token verifier sets it only when the issuer granted the `service` role, and with
    mutual TLS the kit admits it only when the peer certificate names the same service.
    A `services/…` subject without it is an ordinary caller.
    """

    subject: str
    roles: frozenset[Role]
    expires_at: dt.datetime
    birth_date: dt.date | None = None
    age_bracket: AgeBracket = AgeBracket.UNKNOWN
    country: str = ""
    on_behalf_of: Principal | None = field(default=None)
    service: str = ""

    @property
    def is_service(self) -> bool:
        return bool(self.service) and Role.SERVICE in self.roles

    @property
    def user_id(self) -> str:
        """The `{user}` of `users/{user}`, or of the user a service acts for; '' if none."""
        acting = self.on_behalf_of or self
        return acting.subject.removeprefix("users/") if acting.subject.startswith("users/") else ""

    def has_role(self, *roles: Role) -> bool:
        return bool(self.roles.intersection(roles))

    def age_on(self, day: dt.date) -> int | None:
        if self.birth_date is None:
            return None
        years = day.year - self.birth_date.year
        if (day.month, day.day) < (self.birth_date.month, self.birth_date.day):
            years -= 1
        return years

    def is_adult_on(self, day: dt.date) -> bool:
        """True only when adulthood is known: an unknown age is treated as a minor."""
        age = self.age_on(day)
        if age is not None:
            return age >= 18
        return self.age_bracket is AgeBracket.ADULT


def birth_date_for_age(age: int, today: dt.date) -> dt.date:
    """The latest birth date of someone who is `age` years old on `today` (dev tokens, tests)."""
    try:
        return today.replace(year=today.year - age)
    except ValueError:  # today is 29 February
        return today.replace(year=today.year - age, day=28)
