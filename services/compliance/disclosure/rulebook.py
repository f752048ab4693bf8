"""The versioned rule sets, read from `rulesets/*.json`: rules, their legal references and messages,
and the lexicon the engine reads captions with.

A rule change is a new file with a new `version`; old files stay, so a verdict's
`rules_version` can always be listed and explained. The newest version decides new verdicts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from services.compliance.disclosure.model import Lexicon, Market, Rule, RuleSet
from services.compliance.disclosure.text import normalise

RULESETS = Path(__file__).with_name("rulesets")


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


@cache
def rule_sets(directory: Path = RULESETS) -> Mapping[str, RuleSet]:
    """Every rule set in `directory`, by version, oldest first."""
    loaded = [parse_rule_set(json.loads(path.read_text(encoding="utf-8"))) for path in sorted(directory.glob("*.json"))]
    return {rule_set.version: rule_set for rule_set in sorted(loaded, key=lambda r: _version_key(r.version))}


def current_rule_set(directory: Path = RULESETS) -> RuleSet:
    return list(rule_sets(directory).values())[-1]


def parse_rule_set(data: dict[str, Any]) -> RuleSet:
    rules = tuple(
        Rule(rule_id=r["rule_id"], title=r["title"], description=r["description"],
             legal_reference=r["legal_reference"], markets=tuple(Market(m) for m in r["markets"]),
             version=int(r["version"]), messages=dict(r["messages"]))
        for r in data["rules"])
    if len({rule.rule_id for rule in rules}) != len(rules):
        raise ValueError(f"rule set {data['version']} names a rule twice")
    words: dict[str, Any] = data["lexicon"]

    def listed(name: str) -> tuple[str, ...]:
        return tuple(normalise(entry) for entry in words[name])

    per_market_labels = {Market(market): tuple(normalise(label) for label in labels)
                         for market, labels in words["accepted_labels"].items()}
    return RuleSet(
        version=str(data["version"]),
        rules=rules,
        lexicon=Lexicon(
            accepted_labels=per_market_labels,
            required_label={Market(market): label for market, label in words["required_label"].items()},
            label_lead_ins=listed("label_lead_ins"),
            negations=listed("negations"),
            denial_words=listed("denial_words"),
            denial_phrases=listed("denial_phrases"),
            unpaid_claims=listed("unpaid_claims"),
            non_labels=listed("non_labels"),
            hashtag_non_labels=listed("hashtag_non_labels"),
            foreign_label_words=listed("foreign_label_words"),
            gift_phrases=listed("gift_phrases"),
            gift_hints=listed("gift_hints"),
            discount_words=listed("discount_words"),
            code_words=listed("code_words"),
            affiliate_domains=tuple(domain.lower() for domain in words["affiliate_domains"]),
            affiliate_url_markers=tuple(marker.lower() for marker in words["affiliate_url_markers"]),
            shop_words=listed("shop_words"),
            bio_link_phrases=listed("bio_link_phrases"),
            calls_to_buy=listed("calls_to_buy"),
            thanks_words=listed("thanks_words"),
            praise_words=listed("praise_words"),
            urgency_phrases=listed("urgency_phrases"),
            price_phrases=listed("price_phrases"),
            charity_words=listed("charity_words"),
            ai_label_text={Market(market): dict(texts) for market, texts in words["ai_label_text"].items()},
            conspicuous_within_characters=int(words["conspicuous_within_characters"]),
            buried_hashtag_run=int(words["buried_hashtag_run"]),
        ),
    )
