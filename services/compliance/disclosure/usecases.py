"""The disclosure use cases: evaluate, assess, list rules. Over one port, the rule sets.

The engine is pure CPU, so the use cases are plain functions of (command, rules). What they
add is the promise callers rely on: an engine failure never answers "compliant": it answers
"needs review" with the finding `ENGINE_FAILURE`, and the failure is logged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from libs.errors import DomainError, NotFound
from libs.pagination import PageTokens, page_size
from services.compliance.disclosure.advertising import evaluate_disclosure
from services.compliance.disclosure.ai_content import assess_ai_content, declared_label
from services.compliance.disclosure.model import (
    AiAssessment,
    AiDeclaration,
    AiLabelSource,
    C2paEvidence,
    DisclosureContent,
    DisclosureDecision,
    Finding,
    Market,
    Placement,
    Rule,
    RuleSet,
    Severity,
    Verdict,
)

logger = logging.getLogger(__name__)

DEFAULT_RULES_PAGE = 100
RULE_PAGES = PageTokens("compliance.ListDisclosureRules")


class RuleSource(Protocol):
    """Where the versioned rule sets come from (the packaged JSON files in production)."""

    def current(self) -> RuleSet: ...

    def version(self, version: str) -> RuleSet | None: ...


@dataclass(frozen=True)
class RuleBook:
    """A `RuleSource` over rule sets loaded once, newest last."""

    by_version: Mapping[str, RuleSet]

    def current(self) -> RuleSet:
        return list(self.by_version.values())[-1]

    def version(self, version: str) -> RuleSet | None:
        return self.by_version.get(version)


def evaluate(content: DisclosureContent, market: Market, rules: RuleSource) -> DisclosureDecision:
    rule_set = rules.current()
    try:
        return evaluate_disclosure(content, market, rule_set)
    except DomainError:
        raise
    except Exception:
        logger.exception("the disclosure engine failed on %s", content.content)
        return DisclosureDecision(verdict=Verdict.NEEDS_REVIEW, is_advertising=False, required_label="",
                                  required_placement=Placement.NONE, findings=(_engine_failure(rule_set, market),),
                                  rules_version=rule_set.version)


def assess(declaration: AiDeclaration, c2pa: C2paEvidence, market: Market, rules: RuleSource) -> AiAssessment:
    rule_set = rules.current()
    try:
        return assess_ai_content(declaration, c2pa, market, rule_set)
    except DomainError:
        raise
    except Exception:
        logger.exception("the AI-content assessment failed")
        label = declared_label(declaration)
        return AiAssessment(
            label=label, source=AiLabelSource.SELF_DECLARATION, deepfake_disclosure_required=False,
            label_text=rule_set.lexicon.ai_label_text.get(market, {}).get(label.value, ""), needs_review=True,
            findings=(_engine_failure(rule_set, market),), rules_version=rule_set.version)


def _engine_failure(rule_set: RuleSet, market: Market) -> Finding:
    rule = rule_set.rule("ENGINE_FAILURE")
    return Finding(rule.rule_id, Severity.VIOLATION, rule.message(market), rule.legal_reference)


@dataclass(frozen=True)
class RulePage:
    version: str
    rules: list[Rule]
    next_page_token: str


def list_rules(market: Market | None, rules_version: str, requested_size: int, page_token: str,
               rules: RuleSource) -> RulePage:
    rule_set = rules.version(rules_version) if rules_version else rules.current()
    if rule_set is None:
        raise NotFound(f"no rule set has version {rules_version!r}", resource_name=rules_version,
                       reason="RULES_VERSION_UNKNOWN", metadata={"rules_version": rules_version,
                                                                 "current": rules.current().version})
    bound_to = f"{rule_set.version}|{market.value if market else ''}"
    position = RULE_PAGES.decode(page_token, bound_to=bound_to, shape=(int,))
    offset = int(position[0]) if position else 0
    size = page_size(requested_size, default=DEFAULT_RULES_PAGE)
    matching = rule_set.rules_for(market)
    page = matching[offset:offset + size]
    more = offset + size < len(matching)
    return RulePage(rule_set.version, page, RULE_PAGES.encode(offset + size, bound_to=bound_to) if more else "")
