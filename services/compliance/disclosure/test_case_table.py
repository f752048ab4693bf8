"""The case table, against the engine: every case's verdict, whether it is advertising, and its rule."""

from __future__ import annotations

import pytest

from services.compliance.disclosure.advertising import evaluate_disclosure
from services.compliance.disclosure.cases import DisclosureCase, load_cases
from services.compliance.disclosure.rulebook import current_rule_set

CASES = load_cases()


def test_the_table_has_sixty_cases_germany_first_with_eu_and_us_contrasts() -> None:
    markets = [case.market.value for case in CASES]
    assert len(CASES) >= 60
    assert markets[0] == "GERMANY" and markets.count("GERMANY") > len(CASES) / 2
    assert {"EUROPEAN_UNION", "UNITED_STATES"} <= set(markets)


@pytest.mark.parametrize("case", CASES, ids=[case.case_id for case in CASES])
def test_case(case: DisclosureCase) -> None:
    decision = evaluate_disclosure(case.content, case.market, current_rule_set())
    rules = [finding.rule_id for finding in decision.findings]
    assert (decision.verdict, decision.is_advertising) == (case.verdict, case.advertising), (case.reason, rules)
    if case.rule:
        assert case.rule in rules, (case.reason, rules)
