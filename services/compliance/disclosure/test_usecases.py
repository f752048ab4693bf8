"""The promise around the engine: a failure is never "compliant"; contradictions are named."""

from __future__ import annotations

import dataclasses

import pytest

from libs.errors import InvalidArgument
from services.compliance.disclosure import usecases
from services.compliance.disclosure.model import (
    AiDeclaration,
    AiUsage,
    C2paEvidence,
    C2paValidation,
    CommercialDeclaration,
    DisclosureContent,
    Market,
    Placement,
    Relationship,
    RuleSet,
    Verdict,
)
from services.compliance.disclosure.rulebook import current_rule_set


def broken_rules() -> usecases.RuleBook:
    """A rule set whose lexicon lost the German market: the engine fails on German content."""
    rules = current_rule_set()
    lexicon = dataclasses.replace(rules.lexicon, required_label={}, ai_label_text={
        market: texts for market, texts in rules.lexicon.ai_label_text.items() if market is not Market.GERMANY})
    return usecases.RuleBook({rules.version: RuleSet(rules.version, rules.rules, lexicon)})


ADVERT = DisclosureContent("creators/ada/videos/v1", "Werbung | Neues Serum", (),
                           CommercialDeclaration(Relationship.PAID_PARTNERSHIP, "Glowlab"))


def test_an_engine_failure_yields_needs_review_never_compliant() -> None:
    decision = usecases.evaluate(ADVERT, Market.GERMANY, broken_rules())
    assert decision.verdict is Verdict.NEEDS_REVIEW
    assert [finding.rule_id for finding in decision.findings] == ["ENGINE_FAILURE"]
    assert "Compliance-Team" in decision.findings[0].message


def test_an_assessment_failure_needs_review_and_keeps_the_declared_label() -> None:
    assessment = usecases.assess(AiDeclaration(AiUsage.GENERATED), C2paEvidence(C2paValidation.ABSENT),
                                 Market.GERMANY, broken_rules())
    assert assessment.needs_review and assessment.label.value == "AI_GENERATED"


def test_the_same_rules_decide_normally() -> None:
    decision = usecases.evaluate(ADVERT, Market.GERMANY, usecases.RuleBook({"2026.1": current_rule_set()}))
    assert decision.verdict is Verdict.COMPLIANT


def test_a_label_without_a_placement_names_both_fields() -> None:
    with pytest.raises(InvalidArgument) as raised:
        dataclasses.replace(ADVERT, label_text="Werbung", label_placement=Placement.NONE)
    assert {v.field for v in raised.value.violations} == {"content.label_text", "content.label_placement"}


def test_absent_c2pa_evidence_that_describes_a_manifest_is_contradictory() -> None:
    with pytest.raises(InvalidArgument) as raised:
        C2paEvidence(C2paValidation.ABSENT, trusted=True, signer="Camco")
    assert {v.field for v in raised.value.violations} == {"c2pa.validation", "c2pa.trusted", "c2pa.signer"}


def test_a_label_without_a_stated_placement_is_the_platform_label_in_front() -> None:
    unlabelled = dataclasses.replace(ADVERT, caption="Neues Serum")
    assert usecases.evaluate(unlabelled, Market.GERMANY, usecases.RuleBook({"2026.1": current_rule_set()})).verdict \
        is Verdict.LABEL_REQUIRED
    placed = dataclasses.replace(unlabelled, label_text="Anzeige")
    assert usecases.evaluate(placed, Market.GERMANY, usecases.RuleBook({"2026.1": current_rule_set()})).verdict \
        is Verdict.COMPLIANT
