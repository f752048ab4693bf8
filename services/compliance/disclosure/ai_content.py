"""The AI label (EU AI Act Art. 50) from C2PA evidence and the creator's declaration. Pure.

Three findings always, each on its own: integrity (the manifest validates), trust (its signer
chains to the trust list the reader used), and AI provenance (the IPTC digital source types of
its `c2pa.actions`). The declaration is the fallback when no manifest speaks, and the
cross-check when one does. The label errs towards disclosure: when either source says AI, the
content is labelled, and the stronger statement (generated over edited) wins.
"""

from __future__ import annotations

from services.compliance.disclosure.model import (
    AiAssessment,
    AiDeclaration,
    AiLabel,
    AiLabelSource,
    AiUsage,
    C2paEvidence,
    C2paValidation,
    Finding,
    Market,
    RuleSet,
    Severity,
    ordered,
)

IPTC = "http://cv.iptc.org/newscodes/digitalsourcetype/"
_SOURCE_TYPE_LABELS = {
    "trainedAlgorithmicMedia": AiLabel.AI_GENERATED,
    "compositeWithTrainedAlgorithmicMedia": AiLabel.AI_EDITED,
}
_DECLARED_LABELS = {AiUsage.NONE: AiLabel.NONE, AiUsage.GENERATED: AiLabel.AI_GENERATED, AiUsage.EDITED: AiLabel.AI_EDITED}
_STRENGTH = {AiLabel.NONE: 0, AiLabel.AI_EDITED: 1, AiLabel.AI_GENERATED: 2}


def manifest_label(source_types: tuple[str, ...]) -> tuple[AiLabel, list[str]]:
    """The label the digital source types call for, and the types that called for it."""
    label, matched = AiLabel.NONE, []
    for source_type in source_types:
        name = source_type.rsplit("/", 1)[-1]
        found = _SOURCE_TYPE_LABELS.get(name)
        if found is None:
            continue
        matched.append(name)
        if _STRENGTH[found] > _STRENGTH[label]:
            label = found
    return label, matched


def declared_label(declaration: AiDeclaration) -> AiLabel:
    return _DECLARED_LABELS[declaration.usage]


def assess_ai_content(declaration: AiDeclaration, c2pa: C2paEvidence, market: Market, rules: RuleSet) -> AiAssessment:
    findings: list[Finding] = []
    english = market is not Market.GERMANY

    def find(rule_id: str, severity: Severity, found: str) -> None:
        rule = rules.rule(rule_id)
        findings.append(Finding(rule_id, severity, rule.message(market, evidence=found), rule.legal_reference, found))

    failures = ", ".join(c2pa.validation_failures)
    signer = c2pa.signer or ("unknown signer" if english else "unbekannter Signierer")
    needs_review = False
    if c2pa.validation is C2paValidation.ABSENT:
        find("AI_C2PA_INTEGRITY", Severity.INFO, "no manifest" if english else "kein Manifest")
        find("AI_C2PA_TRUST", Severity.INFO, "no manifest to trust" if english else "kein Manifest zu prüfen")
    elif c2pa.validation is C2paValidation.INVALID:
        needs_review = True
        find("AI_C2PA_INTEGRITY", Severity.VIOLATION,
             ("manifest invalid" if english else "Manifest ungültig") + (f" ({failures})" if failures else ""))
        find("AI_C2PA_TRUST", Severity.WARNING,
             f"not assessed, the manifest is invalid ({signer})" if english
             else f"nicht geprüft, das Manifest ist ungültig ({signer})")
    else:
        find("AI_C2PA_INTEGRITY", Severity.INFO, "manifest valid" if english else "Manifest gültig")
        if c2pa.trusted:
            find("AI_C2PA_TRUST", Severity.INFO,
                 f"valid and trusted: {signer} is on the trust list" if english
                 else f"gültig und vertrauenswürdig: {signer} steht auf der Vertrauensliste")
        else:
            find("AI_C2PA_TRUST", Severity.WARNING,
                 f"valid but not trusted: {signer} is not on the trust list" if english
                 else f"gültig, aber nicht vertrauenswürdig: {signer} steht nicht auf der Vertrauensliste")

    from_manifest, matched = manifest_label(c2pa.digital_source_types)
    from_creator = declared_label(declaration)
    label = max(from_manifest, from_creator, key=lambda candidate: _STRENGTH[candidate])
    if from_manifest is not AiLabel.NONE and from_creator is not AiLabel.NONE:
        source = AiLabelSource.C2PA_AND_SELF_DECLARATION
    elif from_manifest is not AiLabel.NONE:
        source = AiLabelSource.C2PA
    elif from_creator is not AiLabel.NONE:
        source = AiLabelSource.SELF_DECLARATION
    else:
        source = AiLabelSource.NONE
    find("AI_PROVENANCE", Severity.INFO, _provenance(matched, from_creator, label, english))

    if from_manifest is not AiLabel.NONE and from_creator is AiLabel.NONE:
        # A valid manifest outweighs the declaration; a broken one is already under review.
        needs_review = True
        find("AI_DECLARATION_CROSS_CHECK", Severity.VIOLATION,
             f"the manifest says {', '.join(matched)}, the declaration says no AI" if english
             else f"das Manifest sagt {', '.join(matched)}, deine Angabe sagt keine KI")
    elif from_manifest is not AiLabel.NONE and from_manifest is not from_creator:
        find("AI_DECLARATION_CROSS_CHECK", Severity.WARNING,
             f"the manifest says {', '.join(matched)}, the declaration says {declaration.usage.value}" if english
             else f"das Manifest sagt {', '.join(matched)}, deine Angabe sagt {declaration.usage.value}")

    texts = rules.lexicon.ai_label_text[market]
    deepfake = declaration.depicts_real_people_or_events and label is not AiLabel.NONE
    if deepfake:
        find("AI_DEEPFAKE_DISCLOSURE", Severity.WARNING, texts["DEEPFAKE"])
    elif declaration.depicts_real_people_or_events:
        # Declared as depicting real events that did not happen so, yet nobody says AI: a
        # person decides whether it is an AI deepfake.
        needs_review = True
        find("AI_DEEPFAKE_DISCLOSURE", Severity.WARNING,
             "depicts real people or events as they did not happen, but no AI is declared or recorded" if english
             else "zeigt reale Personen oder Ereignisse anders als geschehen, aber ohne angegebene KI")
    label_text = texts["DEEPFAKE"] if deepfake else texts.get(label.value, "")
    return AiAssessment(label=label, source=source, deepfake_disclosure_required=deepfake, label_text=label_text,
                        needs_review=needs_review, findings=ordered(findings), rules_version=rules.version)


def _provenance(matched: list[str], declared: AiLabel, label: AiLabel, english: bool) -> str:
    manifest = ", ".join(matched) if matched else ("no AI source type" if english else "kein KI-Quelltyp")
    if english:
        return f"manifest: {manifest}; declaration: {declared.value}; label: {label.value}"
    return f"Manifest: {manifest}; Angabe: {declared.value}; Kennzeichnung: {label.value}"
