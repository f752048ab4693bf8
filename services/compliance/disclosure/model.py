"""The disclosure domain: what is judged, the rules that judge it, and the answers. No I/O.

A verdict is a pure function of the content, the market and one versioned rule set
(`RuleSet`), so the same input and the same `rules_version` always give the same answer.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

from libs.errors import FieldViolation, InvalidArgument


class Market(enum.StrEnum):
    GERMANY = "GERMANY"
    EUROPEAN_UNION = "EUROPEAN_UNION"
    UNITED_STATES = "UNITED_STATES"


class Relationship(enum.StrEnum):
    NONE = "NONE"
    PAID_PARTNERSHIP = "PAID_PARTNERSHIP"
    FREE_PRODUCT = "FREE_PRODUCT"
    AFFILIATE = "AFFILIATE"
    OWN_BRAND = "OWN_BRAND"


class Placement(enum.StrEnum):
    UNSPECIFIED = "UNSPECIFIED"
    NONE = "NONE"
    BEFORE_CONTENT = "BEFORE_CONTENT"
    CAPTION_START = "CAPTION_START"
    HASHTAGS = "HASHTAGS"


class Verdict(enum.StrEnum):
    COMPLIANT = "COMPLIANT"
    LABEL_REQUIRED = "LABEL_REQUIRED"
    NON_COMPLIANT = "NON_COMPLIANT"
    NEEDS_REVIEW = "NEEDS_REVIEW"


class Severity(enum.IntEnum):
    """Ordered so that sorting by descending severity puts violations first."""

    INFO = 1
    WARNING = 2
    VIOLATION = 3


@dataclass(frozen=True)
class Rule:
    rule_id: str
    title: str
    description: str
    legal_reference: str
    markets: tuple[Market, ...]
    version: int
    messages: dict[str, str]

    def message(self, market: Market, **values: str) -> str:
        """The creator-facing message: German for the German market, English elsewhere."""
        return self.messages["de" if market is Market.GERMANY else "en"].format(**values)


@dataclass(frozen=True)
class Lexicon:
    """The words a rule set reads, per market where the law differs (all normalised, see `text`)."""

    accepted_labels: dict[Market, tuple[str, ...]]
    required_label: dict[Market, str]
    label_lead_ins: tuple[str, ...]
    negations: tuple[str, ...]
    denial_words: tuple[str, ...]
    denial_phrases: tuple[str, ...]
    unpaid_claims: tuple[str, ...]
    non_labels: tuple[str, ...]
    hashtag_non_labels: tuple[str, ...]
    foreign_label_words: tuple[str, ...]
    gift_phrases: tuple[str, ...]
    gift_hints: tuple[str, ...]
    discount_words: tuple[str, ...]
    code_words: tuple[str, ...]
    affiliate_domains: tuple[str, ...]
    affiliate_url_markers: tuple[str, ...]
    shop_words: tuple[str, ...]
    bio_link_phrases: tuple[str, ...]
    calls_to_buy: tuple[str, ...]
    thanks_words: tuple[str, ...]
    praise_words: tuple[str, ...]
    urgency_phrases: tuple[str, ...]
    price_phrases: tuple[str, ...]
    charity_words: tuple[str, ...]
    ai_label_text: dict[Market, dict[str, str]]
    conspicuous_within_characters: int
    buried_hashtag_run: int


@dataclass(frozen=True, eq=False)
class RuleSet:
    """One version of the rules; compared by identity, since each version is loaded once."""

    version: str
    rules: tuple[Rule, ...]
    lexicon: Lexicon

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.rule_id == rule_id:
                return rule
        raise KeyError(f"rule set {self.version} has no rule {rule_id}")

    def rules_for(self, market: Market | None) -> list[Rule]:
        return sorted((r for r in self.rules if market is None or market in r.markets), key=lambda r: r.rule_id)


@dataclass(frozen=True)
class Finding:
    rule_id: str
    severity: Severity
    message: str
    legal_reference: str
    evidence: str = ""


# -- advertising disclosure -----------------------------------------------------------------


@dataclass(frozen=True)
class CommercialDeclaration:
    relationship: Relationship
    brand_name: str = ""
    payer_name: str = ""


@dataclass(frozen=True)
class DisclosureContent:
    content: str
    caption: str
    hashtags: tuple[str, ...]
    declaration: CommercialDeclaration
    product_tags: tuple[str, ...] = ()
    affiliate_links: tuple[str, ...] = ()
    label_text: str = ""
    label_placement: Placement = Placement.UNSPECIFIED
    """UNSPECIFIED with a label means the platform's label feature, which shows it before the content."""

    def __post_init__(self) -> None:
        violations: list[FieldViolation] = []
        declaration = self.declaration
        if declaration.relationship is Relationship.NONE:
            for name, value in (("brand_name", declaration.brand_name), ("payer_name", declaration.payer_name)):
                if value:
                    violations += _contradiction(
                        ("content.declaration.relationship", f"is NONE, yet content.declaration.{name} is set"),
                        (f"content.declaration.{name}", "must be empty when the relationship is NONE"))
        placed = self.label_placement not in (Placement.NONE, Placement.UNSPECIFIED)
        if placed and not self.label_text.strip():
            violations += _contradiction(
                ("content.label_placement", f"is {self.label_placement.value}, yet there is no content.label_text"),
                ("content.label_text", "is required when content.label_placement names a place"))
        if self.label_placement is Placement.NONE and self.label_text.strip():
            violations += _contradiction(
                ("content.label_text", "is set, yet content.label_placement says there is no label"),
                ("content.label_placement", "must name a place when content.label_text is set"))
        if violations:
            raise InvalidArgument(
                "contradictory input: " + "; ".join(f"{v.field} {v.description}" for v in violations),
                violations=violations, reason="CONTRADICTORY_INPUT")


def _contradiction(*fields: tuple[str, str]) -> list[FieldViolation]:
    return [FieldViolation(name, description, "CONTRADICTORY_INPUT") for name, description in fields]


@dataclass(frozen=True)
class DisclosureDecision:
    verdict: Verdict
    is_advertising: bool
    required_label: str
    required_placement: Placement
    findings: tuple[Finding, ...]
    rules_version: str


# -- AI content -----------------------------------------------------------------------------


class AiUsage(enum.StrEnum):
    NONE = "NONE"
    GENERATED = "GENERATED"
    EDITED = "EDITED"


class C2paValidation(enum.StrEnum):
    ABSENT = "ABSENT"
    VALID = "VALID"
    INVALID = "INVALID"


class AiLabel(enum.StrEnum):
    NONE = "NONE"
    AI_GENERATED = "AI_GENERATED"
    AI_EDITED = "AI_EDITED"


class AiLabelSource(enum.StrEnum):
    NONE = "NONE"
    C2PA = "C2PA"
    SELF_DECLARATION = "SELF_DECLARATION"
    C2PA_AND_SELF_DECLARATION = "C2PA_AND_SELF_DECLARATION"


@dataclass(frozen=True)
class AiDeclaration:
    usage: AiUsage
    depicts_real_people_or_events: bool = False


@dataclass(frozen=True)
class C2paEvidence:
    validation: C2paValidation
    trusted: bool = False
    digital_source_types: tuple[str, ...] = ()
    claim_generator: str = ""
    signer: str = ""
    validation_failures: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.validation is not C2paValidation.ABSENT:
            return
        claimed = [name for name, value in (
            ("trusted", self.trusted), ("digital_source_types", self.digital_source_types),
            ("signer", self.signer), ("claim_generator", self.claim_generator)) if value]
        if claimed:
            violations = [FieldViolation("c2pa.validation", "is ABSENT, yet the evidence describes a manifest",
                                         "CONTRADICTORY_INPUT")]
            violations += [FieldViolation(f"c2pa.{name}", "must be empty when there is no manifest",
                                          "CONTRADICTORY_INPUT") for name in claimed]
            raise InvalidArgument("contradictory input: c2pa.validation is ABSENT, yet "
                                  + ", ".join(f"c2pa.{name}" for name in claimed) + " describe a manifest",
                                  violations=violations, reason="CONTRADICTORY_INPUT")


@dataclass(frozen=True)
class AiAssessment:
    label: AiLabel
    source: AiLabelSource
    deepfake_disclosure_required: bool
    label_text: str
    needs_review: bool
    findings: tuple[Finding, ...]
    rules_version: str


def ordered(findings: Sequence[Finding]) -> tuple[Finding, ...]:
    """Violations first, then warnings, then information; otherwise in the order found."""
    return tuple(sorted(findings, key=lambda finding: -finding.severity))

