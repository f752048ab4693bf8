"""The ad repository's domain (DSA Art. 26, 28, 39): entries, reach, retention, targeting rules. No I/O.

An entry holds every item of Art. 39(2): (a) the content and the brand, (b) on whose behalf,
(c) who paid, (d) the period shown, (e) whether and which targeting parameters were used and
which excluded, (f) whether it is a creator's commercial communication, (g) total reach and
reach per member state. Reach is counted per member state and day, never per person.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

from libs.errors import FieldViolation, InvalidArgument

ADULT_AGE = 18

# GDPR Art. 9 categories, as interest names an ad system would use (DSA Art. 26(3)).
SPECIAL_CATEGORY_TERMS = (
    "health", "gesundheit", "medical", "medizin", "illness", "krankheit", "disability", "behinderung", "pregnan",
    "schwanger", "mental", "religio", "faith", "glaube", "politic", "politik", "party member", "partei",
    "sexual", "lgbt", "queer", "gay", "lesbian", "ethnic", "ethni", "race", "rasse", "migration background",
    "trade union", "gewerkschaft", "genetic", "genetisch", "biometric", "biometrisch",
)


class AdKind(enum.StrEnum):
    PAID_AD = "PAID_AD"
    COMMERCIAL_CONTENT = "COMMERCIAL_CONTENT"
    PRODUCT_PLACEMENT = "PRODUCT_PLACEMENT"
    AFFILIATE = "AFFILIATE"


@dataclass(frozen=True)
class Targeting:
    member_states: tuple[str, ...] = ()
    min_age: int = 0
    max_age: int = 0
    interests: tuple[str, ...] = ()
    uses_profiling: bool = False
    excluded_member_states: tuple[str, ...] = ()
    excluded_interests: tuple[str, ...] = ()

    @property
    def targeted(self) -> bool:
        """Whether any targeting parameter was used (Art. 39(2)(e))."""
        return bool(self.member_states or self.min_age or self.max_age or self.interests or self.uses_profiling
                    or self.excluded_member_states or self.excluded_interests)

    @property
    def special_categories(self) -> tuple[str, ...]:
        return tuple(interest for interest in (*self.interests, *self.excluded_interests)
                     if any(term in interest.casefold() for term in SPECIAL_CATEGORY_TERMS))

    def check(self, prefix: str) -> None:
        """Refuse contradictory targeting, naming the fields (under `prefix`, e.g. `ad.targeting`)."""
        violations: list[FieldViolation] = []

        def contradiction(first: str, second: str, description: str) -> None:
            for name in (first, second):
                violations.append(FieldViolation(f"{prefix}.{name}", description, "CONTRADICTORY_INPUT"))

        if self.uses_profiling and self.min_age < ADULT_AGE:
            contradiction("uses_profiling", "min_age",
                          f"profiling-based targeting must not reach minors: min_age must be at least {ADULT_AGE}")
        if self.interests and not self.uses_profiling:
            contradiction("interests", "uses_profiling", "targeting by interests is profiling: set uses_profiling")
        if self.max_age and self.max_age < self.min_age:
            contradiction("max_age", "min_age", "max_age must not be below min_age")
        both = sorted(set(self.member_states) & set(self.excluded_member_states))
        if both:
            contradiction("member_states", "excluded_member_states", f"{', '.join(both)} both targeted and excluded")
        if violations:
            raise InvalidArgument("contradictory targeting: " + "; ".join(
                f"{v.field}: {v.description}" for v in violations), violations=violations, reason="CONTRADICTORY_INPUT")


@dataclass(frozen=True)
class AdDraft:
    """What a registrant states about an ad; the repository adds the rest."""

    kind: AdKind
    content: str
    summary: str
    advertiser: str
    payer: str
    targeting: Targeting
    brand: str = ""
    creator: str = ""
    found_by_engine: bool = False

    def fingerprint(self) -> str:
        """Identifies the stated entry, so a reused request id with another entry is caught."""
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True, default=str).encode()).hexdigest()

    @property
    def paid_by(self) -> str:
        """Art. 39(2)(c): the payer, which is the advertiser when nobody else is named."""
        return self.payer or self.advertiser


@dataclass(frozen=True)
class Ad:
    name: str
    draft: AdDraft
    create_time: dt.datetime
    first_display: dt.datetime | None = None
    last_display: dt.datetime | None = None
    reach: Mapping[str, int] = field(default_factory=dict)

    @property
    def total_reach(self) -> int:
        return sum(self.reach.values())

    @property
    def retain_until(self) -> dt.datetime:
        """One year after the last display (Art. 39(1)); an entry never shown counts from registration."""
        return one_year_after(self.last_display or self.create_time)


def one_year_after(moment: dt.datetime) -> dt.datetime:
    try:
        return moment.replace(year=moment.year + 1)
    except ValueError:  # 29 February
        return moment.replace(year=moment.year + 1, day=28)


@dataclass(frozen=True)
class Displays:
    """Displays of one ad in one member state on one day (midnight UTC)."""

    member_state: str
    day: dt.date
    impressions: int


def check_displays(rows: Sequence[Displays], now: dt.datetime) -> None:
    today = now.astimezone(dt.UTC).date()
    future = [index for index, row in enumerate(rows) if row.day > today]
    if future:
        raise InvalidArgument("impressions cannot be recorded for days that have not begun", violations=[
            FieldViolation(f"reach[{index}].day", "is in the future", "DAY_IN_FUTURE") for index in future])


def displays_fingerprint(ad: str, rows: Sequence[Displays]) -> str:
    material = [ad, *sorted((row.member_state, row.day.isoformat(), row.impressions) for row in rows)]
    return hashlib.sha256(json.dumps(material).encode()).hexdigest()


@dataclass(frozen=True)
class AdSearch:
    """Art. 39 search: every filter is optional; text filters are case-insensitive substrings."""

    advertiser: str = ""
    payer: str = ""
    text: str = ""
    member_state: str = ""
    kind: AdKind | None = None
    start: dt.datetime | None = None
    end: dt.datetime | None = None

    def key(self) -> str:
        """The filter in one stable spelling, for binding page tokens to it."""
        return json.dumps([self.advertiser.casefold(), self.payer.casefold(), self.text.casefold(), self.member_state,
                           self.kind.value if self.kind else "", self.start.isoformat() if self.start else "",
                           self.end.isoformat() if self.end else ""])


# -- targeting (Art. 26(3), 28) ------------------------------------------------------------------


class ConsentAnswer(enum.StrEnum):
    GRANTED = "GRANTED"
    REFUSED = "REFUSED"
    UNKNOWN = "UNKNOWN"


class Refusal(enum.StrEnum):
    VIEWER_IS_MINOR = "VIEWER_IS_MINOR"
    NO_CONSENT = "NO_CONSENT"
    SPECIAL_CATEGORY = "SPECIAL_CATEGORY"
    VIEWER_AGE_UNKNOWN = "VIEWER_AGE_UNKNOWN"


@dataclass(frozen=True)
class TargetingDecision:
    permitted: bool
    refusals: tuple[Refusal, ...]
    explanations: tuple[str, ...]


def decide_targeting(targeting: Targeting, *, viewer_is_adult: bool | None,
                     consent: ConsentAnswer) -> TargetingDecision:
    """Profiling-based targeting needs a known adult who consented, and no special category data."""
    if not targeting.uses_profiling:
        return TargetingDecision(True, (), ("contextual targeting without profiling is always permitted",))
    refusals: list[tuple[Refusal, str]] = []
    if viewer_is_adult is False:
        refusals.append((Refusal.VIEWER_IS_MINOR, "the viewer is known to be under 18 (DSA Art. 28(2))"))
    elif viewer_is_adult is None:
        refusals.append((Refusal.VIEWER_AGE_UNKNOWN, "the viewer's age is not known, so they may be a minor "
                                                     "(DSA Art. 28(2))"))
    if consent is not ConsentAnswer.GRANTED:
        refusals.append((Refusal.NO_CONSENT, f"consent to personalised ads is {consent.value.lower()}, which counts "
                                             "as no (GDPR Art. 6(1)(a), TCF purposes 3-4)"))
    special = targeting.special_categories
    if special:
        refusals.append((Refusal.SPECIAL_CATEGORY, f"targeting uses special categories of personal data "
                                                   f"({', '.join(special)}; DSA Art. 26(3), GDPR Art. 9)"))
    if not refusals:
        return TargetingDecision(True, (), ("an adult viewer who consented to personalised ads",))
    return TargetingDecision(False, tuple(r for r, _ in refusals), tuple(e for _, e in refusals))
