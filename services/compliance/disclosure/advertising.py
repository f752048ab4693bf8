"""Is it advertising, and is it labelled as the market demands? A pure function of the content.

Two readings of the same tokens (see `text`):

- **signals**: what makes content advertising: the declaration, shop tags, affiliate links,
  and in the caption a discount code, an affiliate short link, a shop link in the bio, a
  brand with a call to buy, a free product, words that name a commercial tie, or price claims
  with urgency (excessive promotion). A brand mention without any of these (Hummels) and a
  charity appeal are not advertising.
- **labels**: which label words stand where: an accepted word of the market at the label
  position (the start, after lead-ins such as "Dieser Beitrag enthält"), accepted words
  elsewhere, words that are labels only in other markets, vague terms that are no label at
  all, denials ("Keine Werbung") and claims of no payment ("unbezahlte Werbung").

The verdict follows from both; every step leaves a finding with its rule and evidence.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from services.compliance.disclosure.model import (
    DisclosureContent,
    DisclosureDecision,
    Finding,
    Market,
    Placement,
    Relationship,
    RuleSet,
    Severity,
    Verdict,
    ordered,
)
from services.compliance.disclosure.text import PhraseBook, Token, TokenKind, evidence, read_content, tokenise

_PRICE = re.compile(r"(?:[€$£]\s?\d)|(?:\d+(?:[.,]\d{1,2})?\s?(?:€|\$|£|eur\b|euro|usd\b|dollar))|(?:-?\d{1,2}\s?%)", re.I)
_PERCENT = re.compile(r"\d\s?%")
_CODE_LIKE = re.compile(r"^[A-Za-z0-9]{3,20}$")
_LOOKAHEAD = 3
_NEGATION_WINDOW = 2
_COMPACT_CODE_WORDS = ("rabattcode", "gutscheincode", "promocode", "discountcode", "couponcode", "vouchercode")


@dataclass
class LabelReading:
    at_start: list[str] = field(default_factory=list)
    elsewhere: list[str] = field(default_factory=list)
    conspicuous: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    non_labels: list[str] = field(default_factory=list)
    denials: list[str] = field(default_factory=list)
    unpaid_claims: list[str] = field(default_factory=list)

    def merge(self, other: LabelReading) -> None:
        for name in ("at_start", "elsewhere", "conspicuous", "foreign", "non_labels", "denials", "unpaid_claims"):
            getattr(self, name).extend(getattr(other, name))

    @property
    def any_label(self) -> bool:
        return bool(self.at_start or self.elsewhere or self.foreign)


@dataclass
class Signals:
    strong: list[tuple[str, str]] = field(default_factory=list)
    weak: list[str] = field(default_factory=list)
    mentions: list[str] = field(default_factory=list)
    charity: list[str] = field(default_factory=list)
    gift: bool = False


class MarketReader:
    """The phrase books of one rule set for one market, built once and reused for every call."""

    def __init__(self, rules: RuleSet, market: Market) -> None:
        words = rules.lexicon
        self.rules = rules
        self.market = market
        self.required_label = words.required_label[market]
        accepted = words.accepted_labels[market]
        every_label = {label for labels in words.accepted_labels.values() for label in labels}
        self.accepted = PhraseBook(accepted)
        self.foreign = PhraseBook(w for w in (*words.foreign_label_words, *every_label) if w not in accepted)
        self.any_label = PhraseBook((*every_label, *words.foreign_label_words))
        self.non_labels = PhraseBook(words.non_labels)
        self.hashtag_non_labels = PhraseBook(words.hashtag_non_labels)
        self.denial_phrases = PhraseBook(words.denial_phrases)
        self.unpaid = PhraseBook(words.unpaid_claims)
        self.negations = frozenset(words.negations)
        self.denial_words = frozenset(words.denial_words)
        self.lead_ins = frozenset(words.label_lead_ins)
        self.gift = PhraseBook(words.gift_phrases)
        self.gift_hints = PhraseBook(words.gift_hints)
        self.code_words = PhraseBook(words.code_words)
        self.discount_words = frozenset(words.discount_words)
        self.bio_links = PhraseBook(words.bio_link_phrases)
        self.shop_words = PhraseBook(words.shop_words)
        self.calls_to_buy = PhraseBook(words.calls_to_buy)
        self.thanks = PhraseBook(words.thanks_words)
        self.praise = PhraseBook(words.praise_words)
        self.urgency = PhraseBook(words.urgency_phrases)
        self.price_phrases = PhraseBook(words.price_phrases)
        self.charity = PhraseBook(words.charity_words)
        self.affiliate_domains = words.affiliate_domains
        self.affiliate_markers = words.affiliate_url_markers
        self.visible_characters = words.conspicuous_within_characters
        self.label_openings = frozenset().union(*(book.openings for book in (
            self.denial_phrases, self.unpaid, self.accepted, self.non_labels, self.hashtag_non_labels, self.foreign)),
            self.denial_words, self.negations)
        self.buried_run = words.buried_hashtag_run

    # -- labels ---------------------------------------------------------------------------

    def read_labels(self, tokens: Sequence[Token], *, placed: Placement | None = None) -> LabelReading:
        """The labels in `tokens`; `placed` says where a separately placed label stands."""
        reading = LabelReading()
        start = self._label_position(tokens)
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token.word not in self.label_openings:
                index += 1
                continue
            length = self.denial_phrases.match_at(tokens, index)
            if length or token.word in self.denial_words:
                reading.denials.append(evidence(tokens, index, length or 1))
                index += length or 1
                continue
            if token.word in self.negations:
                negated = self._negated_label(tokens, index)
                if negated:
                    reading.denials.append(evidence(tokens, index, negated))
                    index += negated
                    continue
            length = self.unpaid.match_at(tokens, index)
            if length:
                label = self.any_label.match_at(tokens, index + length) if index + length < len(tokens) else 0
                reading.unpaid_claims.append(evidence(tokens, index, length + label))
                index += length  # the label after "unbezahlte" still counts as a label
                continue
            accepted = self.accepted.match_at(tokens, index)
            vague = self.non_labels.match_at(tokens, index)
            if not vague and (token.kind is TokenKind.HASHTAG or index == start):
                vague = self.hashtag_non_labels.match_at(tokens, index)
            if accepted and accepted >= vague:
                self._place_label(reading, tokens, index, accepted, at_start=index == start, placed=placed)
                index += accepted
                continue
            if vague:
                reading.non_labels.append(evidence(tokens, index, vague))
                index += vague
                continue
            foreign = self.foreign.match_at(tokens, index)
            if foreign:
                reading.foreign.append(evidence(tokens, index, foreign))
                index += foreign
                continue
            index += 1
        return reading

    def _label_position(self, tokens: Sequence[Token]) -> int:
        """Where a label must begin to stand in front: the first word after lead-ins."""
        index = 0
        while index < len(tokens) and not tokens[index].from_hashtag_field:
            if tokens[index].word in self.lead_ins:
                index += 1
                continue
            claim = self.unpaid.match_at(tokens, index)
            if claim:
                index += claim
                continue
            return index
        return -1

    def _negated_label(self, tokens: Sequence[Token], index: int) -> int:
        for distance in range(1, _NEGATION_WINDOW + 1):
            at = index + distance
            if at >= len(tokens):
                break
            label = self.any_label.match_at(tokens, at)
            if label:
                return distance + label
        return 0

    def _place_label(self, reading: LabelReading, tokens: Sequence[Token], index: int, length: int, *,
                     at_start: bool, placed: Placement | None) -> None:
        found = evidence(tokens, index, length)
        if placed is not None:
            at_start = placed in (Placement.BEFORE_CONTENT, Placement.CAPTION_START)
        if at_start:
            reading.at_start.append(found)
            return
        reading.elsewhere.append(found)
        token = tokens[index]
        hidden = token.from_hashtag_field or token.hashtag_run >= self.buried_run or placed is Placement.HASHTAGS
        if not hidden and token.offset < self.visible_characters:
            reading.conspicuous.append(found)

    # -- advertising signals --------------------------------------------------------------

    def read_signals(self, tokens: Sequence[Token], caption: str, reading: LabelReading) -> Signals:
        signals = Signals(mentions=[t.raw for t in tokens if t.kind is TokenKind.MENTION])
        codes = self._discount_codes(tokens)
        if not codes and self._phrases(self.code_words, tokens) and (
                _PERCENT.search(caption) or any(t.word in self.discount_words for t in tokens)):
            codes = self._phrases(self.code_words, tokens)[:1]  # "10% Rabatt mit meinem Code"
        if codes:
            signals.strong.append(("AD_DISCOUNT_CODE", ", ".join(codes)))
        links = [t.raw for t in tokens if t.kind is TokenKind.URL and self._is_affiliate(t.word)]
        if links:
            signals.strong.append(("AD_AFFILIATE_LINK", ", ".join(links)))
        gifts = self._phrases(self.gift, tokens)
        if signals.mentions:
            gifts += self._phrases(self.gift_hints, tokens)
        if gifts:
            signals.gift = True
            signals.strong.append(("AD_FREE_PRODUCT_IS_PAYMENT", ", ".join(gifts)))
        admissions = [found for found in reading.non_labels if found not in gifts]
        if admissions:
            signals.strong.append(("AD_COMMERCIAL_ADMISSION", ", ".join(admissions)))

        signals.charity = self._phrases(self.charity, tokens)
        if signals.charity:
            return signals  # appeals to donate are not calls to buy
        calls = self._phrases(self.calls_to_buy, tokens)
        bio = self._phrases(self.bio_links, tokens)
        shop = self._phrases(self.shop_words, tokens)
        if bio and (shop or codes):
            signals.strong.append(("AD_CAPTION_PROMOTION", ", ".join([*bio, *shop[:2]])))
        prices = [match.group().strip() for match in _PRICE.finditer(caption)] + self._phrases(self.price_phrases, tokens)
        praise = self._phrases(self.thanks, tokens) + self._phrases(self.praise, tokens)
        if signals.mentions and (calls or (prices and (praise or shop))):
            # A brand with a call to buy, or with a price and praise, is a sales pitch, not a casual mention.
            signals.strong.append(("AD_CAPTION_PROMOTION",
                                   ", ".join([signals.mentions[0], *calls, *prices[:1], *praise[:2]])))
        urgency = self._phrases(self.urgency, tokens)
        if prices and (urgency or calls):
            signals.strong.append(("AD_EXCESSIVE_PROMOTION", ", ".join([*urgency, *calls, *prices][:4])))
        elif not signals.strong:
            if calls and (praise or urgency):
                signals.weak += [*calls, *praise, *urgency]
            elif prices and praise:
                signals.weak += [*prices, *praise]
        return signals

    def _phrases(self, book: PhraseBook, tokens: Sequence[Token]) -> list[str]:
        return [evidence(tokens, start, length) for start, length in book.find(tokens)]

    def _discount_codes(self, tokens: Sequence[Token]) -> list[str]:
        codes: list[str] = []
        for index, token in enumerate(tokens):
            named = self.code_words.match_at(tokens, index)
            discount = token.word in self.discount_words
            if not named and not discount:
                continue
            start = index + max(named, 1)
            # "Code ADA20", "Rabatt mit ADA20"; a discount word may also follow ("mit ADA20 spart ihr").
            nearby = tokens[start:start + _LOOKAHEAD] if named else [
                *tokens[start:start + _LOOKAHEAD], *tokens[max(0, index - _LOOKAHEAD + 1):index]]
            for ahead in nearby:
                if self._is_code(ahead):
                    codes.append(f"{evidence(tokens, index, max(named, 1))} {ahead.raw}")
                    break
            else:
                if named and token.word in _COMPACT_CODE_WORDS:
                    codes.append(token.raw)
        return codes

    def _is_code(self, token: Token) -> bool:
        if token.kind is not TokenKind.WORD or not _CODE_LIKE.match(token.raw):
            return False
        letters, digits = any(c.isalpha() for c in token.raw), any(c.isdigit() for c in token.raw)
        return (letters and digits) or (token.raw.isupper() and len(token.raw) >= 4 and token.raw.isalpha())

    def _is_affiliate(self, url: str) -> bool:
        host = url.split("://", 1)[-1].removeprefix("www.").split("/", 1)[0]
        return any(host == domain or host.endswith("." + domain) for domain in self.affiliate_domains) or any(
            marker in url for marker in self.affiliate_markers)


@cache
def market_reader(rules: RuleSet, market: Market) -> MarketReader:
    return MarketReader(rules, market)


_DECLARED_TIES = {
    Relationship.PAID_PARTNERSHIP: "bezahlte Partnerschaft / paid partnership",
    Relationship.FREE_PRODUCT: "Gratisprodukt / free product",
    Relationship.AFFILIATE: "Affiliate",
    Relationship.OWN_BRAND: "eigene Marke / own brand",
}
_PAID = (Relationship.PAID_PARTNERSHIP, Relationship.FREE_PRODUCT, Relationship.AFFILIATE)
_LABEL_RULES = {
    Market.GERMANY: ("DE_LABEL_REQUIRED", "DE_LABEL_BEFORE_CONTENT", "DE_LABEL_WORD"),
    Market.EUROPEAN_UNION: ("EU_LABEL_REQUIRED", "EU_LABEL_AT_START", "LABEL_NOT_A_LABEL"),
    Market.UNITED_STATES: ("US_LABEL_CLEAR_AND_CONSPICUOUS", "US_LABEL_CLEAR_AND_CONSPICUOUS", "LABEL_NOT_A_LABEL"),
}


def evaluate_disclosure(content: DisclosureContent, market: Market, rules: RuleSet) -> DisclosureDecision:
    reader = market_reader(rules, market)
    label = reader.required_label
    findings: list[Finding] = []

    def find(rule_id: str, severity: Severity, found: str) -> None:
        rule = rules.rule(rule_id)
        findings.append(Finding(rule_id, severity, rule.message(market, evidence=found, label=label),
                                rule.legal_reference, found))

    tokens = read_content(content.caption, content.hashtags)
    reading = reader.read_labels(tokens)
    if content.label_text.strip():
        placed = Placement.BEFORE_CONTENT if content.label_placement is Placement.UNSPECIFIED else content.label_placement
        reading.merge(reader.read_labels(tokenise(content.label_text), placed=placed))
    signals = reader.read_signals(tokens, content.caption, reading)

    declaration = content.declaration
    declared = declaration.relationship is not Relationship.NONE
    if declared:
        tie = ", ".join(filter(None, (_DECLARED_TIES[declaration.relationship], declaration.brand_name)))
        find("AD_DECLARED_RELATIONSHIP", Severity.INFO, tie)
        if declaration.relationship is Relationship.FREE_PRODUCT:
            find("AD_FREE_PRODUCT_IS_PAYMENT", Severity.INFO, declaration.brand_name or tie)
    if content.product_tags:
        find("AD_SHOP_PRODUCT_TAG", Severity.INFO, ", ".join(content.product_tags))
    if content.affiliate_links:
        find("AD_AFFILIATE_LINK", Severity.INFO, ", ".join(content.affiliate_links))
    for rule_id, found in signals.strong:
        find(rule_id, Severity.INFO, found)
    advertising = declared or bool(content.product_tags or content.affiliate_links or signals.strong)

    def decided(verdict: Verdict) -> DisclosureDecision:
        needs_label = advertising and verdict is not Verdict.NEEDS_REVIEW
        return DisclosureDecision(
            verdict=verdict, is_advertising=advertising, required_label=label if needs_label else "",
            required_placement=Placement.BEFORE_CONTENT if needs_label else Placement.NONE,
            findings=ordered(findings), rules_version=rules.version)

    if not advertising:
        if signals.weak:
            find("AD_BORDERLINE_PROMOTION", Severity.WARNING, ", ".join(signals.weak[:4]))
            return decided(Verdict.NEEDS_REVIEW)
        if signals.charity:
            find("AD_CHARITY_APPEAL", Severity.INFO, ", ".join(signals.charity[:3]))
        elif signals.mentions:
            find("AD_CASUAL_MENTION", Severity.INFO, ", ".join(signals.mentions[:3]))
        labels = reading.at_start + reading.elsewhere + reading.foreign
        if labels:
            find("LABEL_OVERLABELLING", Severity.INFO, ", ".join(labels[:3]))
        return decided(Verdict.COMPLIANT)

    if reading.denials:
        find("MISLEADING_DENIAL", Severity.VIOLATION, ", ".join(reading.denials))
        return decided(Verdict.NON_COMPLIANT)
    if reading.unpaid_claims and (declaration.relationship in _PAID or signals.gift):
        find("MISLEADING_UNPAID_CLAIM", Severity.VIOLATION, ", ".join(reading.unpaid_claims))
        return decided(Verdict.NON_COMPLIANT)

    labelled = reading.at_start or (market is Market.UNITED_STATES and reading.conspicuous)
    if labelled:
        find("LABEL_COMPLIANT", Severity.INFO, (reading.at_start or reading.conspicuous)[0])
        if not declared:
            find("DECLARE_RELATIONSHIP", Severity.WARNING, (reading.at_start or reading.conspicuous)[0])
        return decided(Verdict.COMPLIANT)

    missing, misplaced, wrong_word = _LABEL_RULES[market]
    if reading.elsewhere:
        find(misplaced, Severity.VIOLATION, ", ".join(reading.elsewhere))
    wrong = reading.foreign + reading.non_labels
    if wrong:
        find(wrong_word, Severity.VIOLATION, ", ".join(wrong))
    if not reading.elsewhere and not wrong:
        find(missing, Severity.VIOLATION, "")
    admitted = reading.any_label or bool(reading.non_labels)
    if not declared and not admitted:
        reasons = [part for _, found in signals.strong for part in found.split(", ")]
        reasons += [*content.product_tags[:1], *content.affiliate_links[:1]]
        find("UNDECLARED_ADVERTISING", Severity.VIOLATION, ", ".join(dict.fromkeys(reasons)))
        return decided(Verdict.NON_COMPLIANT)
    if not declared:
        find("DECLARE_RELATIONSHIP", Severity.WARNING, ", ".join([*reading.elsewhere, *wrong][:3]))
    return decided(Verdict.LABEL_REQUIRED)
