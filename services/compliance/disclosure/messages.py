"""DisclosureService messages <-> the disclosure domain."""

from __future__ import annotations

import enum
from typing import Any, TypeVar

from limelight.compliance.v1 import disclosure_pb2

from services.compliance.disclosure.model import (
    AiAssessment,
    AiDeclaration,
    AiUsage,
    C2paEvidence,
    C2paValidation,
    CommercialDeclaration,
    DisclosureContent,
    DisclosureDecision,
    Finding,
    Market,
    Placement,
    Relationship,
    Rule,
)

E = TypeVar("E", bound=enum.Enum)


def enum_in(domain: type[E], proto_enum: Any, prefix: str, number: int) -> E:
    """The domain member named like the proto value without its prefix (MARKET_GERMANY -> GERMANY)."""
    return domain[proto_enum.Name(number).removeprefix(prefix)]


def enum_out(proto_enum: Any, prefix: str, member: enum.Enum) -> Any:
    """The proto value named like the domain member, with the enum's prefix."""
    return proto_enum.Value(prefix + member.name)


def market_in(number: int) -> Market:
    return enum_in(Market, disclosure_pb2.Market, "MARKET_", number)


def content_in(message: disclosure_pb2.DisclosureContent) -> DisclosureContent:
    declaration = message.declaration
    return DisclosureContent(
        content=message.content,
        caption=message.caption,
        hashtags=tuple(message.hashtags),
        declaration=CommercialDeclaration(
            relationship=enum_in(Relationship, disclosure_pb2.CommercialRelationship, "COMMERCIAL_RELATIONSHIP_",
                                 declaration.relationship),
            brand_name=declaration.brand_name, payer_name=declaration.payer_name),
        product_tags=tuple(message.product_tags),
        affiliate_links=tuple(message.affiliate_links),
        label_text=message.label_text,
        label_placement=enum_in(Placement, disclosure_pb2.LabelPlacement, "LABEL_PLACEMENT_", message.label_placement),
    )


def finding_out(finding: Finding) -> disclosure_pb2.Finding:
    return disclosure_pb2.Finding(
        rule_id=finding.rule_id, severity=enum_out(disclosure_pb2.FindingSeverity, "FINDING_SEVERITY_", finding.severity),
        message=finding.message, legal_reference=finding.legal_reference, evidence=finding.evidence)


def decision_out(decision: DisclosureDecision) -> disclosure_pb2.EvaluateDisclosureResponse:
    return disclosure_pb2.EvaluateDisclosureResponse(
        verdict=enum_out(disclosure_pb2.DisclosureVerdict, "DISCLOSURE_VERDICT_", decision.verdict),
        is_advertising=decision.is_advertising,
        required_label=decision.required_label,
        required_placement=enum_out(disclosure_pb2.LabelPlacement, "LABEL_PLACEMENT_", decision.required_placement),
        findings=[finding_out(finding) for finding in decision.findings],
        rules_version=decision.rules_version,
    )


def ai_declaration_in(message: disclosure_pb2.AiDeclaration) -> AiDeclaration:
    return AiDeclaration(usage=enum_in(AiUsage, disclosure_pb2.AiUsage, "AI_USAGE_", message.usage),
                         depicts_real_people_or_events=message.depicts_real_people_or_events)


def c2pa_in(message: disclosure_pb2.C2paEvidence) -> C2paEvidence:
    return C2paEvidence(
        validation=enum_in(C2paValidation, disclosure_pb2.C2paValidation, "C2PA_VALIDATION_", message.validation),
        trusted=message.trusted, digital_source_types=tuple(message.digital_source_types),
        claim_generator=message.claim_generator, signer=message.signer,
        validation_failures=tuple(message.validation_failures))


def assessment_out(assessment: AiAssessment) -> disclosure_pb2.AssessAiContentResponse:
    return disclosure_pb2.AssessAiContentResponse(
        label=enum_out(disclosure_pb2.AiLabel, "AI_LABEL_", assessment.label),
        source=enum_out(disclosure_pb2.AiLabelSource, "AI_LABEL_SOURCE_", assessment.source),
        deepfake_disclosure_required=assessment.deepfake_disclosure_required,
        label_text=assessment.label_text,
        needs_review=assessment.needs_review,
        findings=[finding_out(finding) for finding in assessment.findings],
        rules_version=assessment.rules_version,
    )


def rule_out(rule: Rule) -> disclosure_pb2.DisclosureRule:
    return disclosure_pb2.DisclosureRule(
        rule_id=rule.rule_id, title=rule.title, description=rule.description, legal_reference=rule.legal_reference,
        markets=[enum_out(disclosure_pb2.Market, "MARKET_", market) for market in rule.markets], version=rule.version)
