"""Targeting rules and retention, without I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from libs.errors import InvalidArgument
from services.compliance.ads.model import (
    Ad,
    AdDraft,
    AdKind,
    ConsentAnswer,
    Refusal,
    Targeting,
    decide_targeting,
    one_year_after,
)

PROFILED = Targeting(min_age=18, interests=("running",), uses_profiling=True)


@pytest.mark.parametrize(("targeting", "fields"), [
    (Targeting(min_age=16, uses_profiling=True), {"t.uses_profiling", "t.min_age"}),
    (Targeting(interests=("sports",)), {"t.interests", "t.uses_profiling"}),
    (Targeting(min_age=30, max_age=20), {"t.max_age", "t.min_age"}),
    (Targeting(member_states=("DE", "AT"), excluded_member_states=("AT",)),
     {"t.member_states", "t.excluded_member_states"}),
])
def test_contradictory_targeting_names_both_fields(targeting: Targeting, fields: set[str]) -> None:
    with pytest.raises(InvalidArgument) as raised:
        targeting.check("t")
    assert {violation.field for violation in raised.value.violations} == fields


@pytest.mark.parametrize(("adult", "consent", "refusals"), [
    (True, ConsentAnswer.GRANTED, ()),
    (False, ConsentAnswer.GRANTED, (Refusal.VIEWER_IS_MINOR,)),
    (None, ConsentAnswer.GRANTED, (Refusal.VIEWER_AGE_UNKNOWN,)),
    (True, ConsentAnswer.UNKNOWN, (Refusal.NO_CONSENT,)),
    (True, ConsentAnswer.REFUSED, (Refusal.NO_CONSENT,)),
    (False, ConsentAnswer.UNKNOWN, (Refusal.VIEWER_IS_MINOR, Refusal.NO_CONSENT)),
])
def test_profiling_needs_a_known_adult_who_consented(
    adult: bool | None, consent: ConsentAnswer, refusals: tuple[Refusal, ...]
) -> None:
    decision = decide_targeting(PROFILED, viewer_is_adult=adult, consent=consent)
    assert decision.refusals == refusals and decision.permitted is (not refusals)
    assert len(decision.explanations) == max(1, len(refusals))


def test_contextual_targeting_is_permitted_even_for_minors_without_consent() -> None:
    decision = decide_targeting(Targeting(member_states=("DE",)), viewer_is_adult=False, consent=ConsentAnswer.UNKNOWN)
    assert decision.permitted


def test_special_category_interests_are_refused_even_with_consent() -> None:
    targeting = Targeting(min_age=18, interests=("Mental Health", "running"), uses_profiling=True)
    decision = decide_targeting(targeting, viewer_is_adult=True, consent=ConsentAnswer.GRANTED)
    assert decision.refusals == (Refusal.SPECIAL_CATEGORY,) and "Mental Health" in decision.explanations[0]


def test_an_entry_is_kept_one_year_after_its_last_display_or_its_registration() -> None:
    created = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)
    draft = AdDraft(AdKind.PAID_AD, "creators/ada/videos/v1", "", "Glowlab", "", Targeting())
    assert Ad("ads/a", draft, created).retain_until == dt.datetime(2027, 1, 5, tzinfo=dt.UTC)
    shown = Ad("ads/a", draft, created, created, dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
    assert shown.retain_until == dt.datetime(2027, 6, 1, tzinfo=dt.UTC)
    assert one_year_after(dt.datetime(2028, 2, 29, tzinfo=dt.UTC)) == dt.datetime(2029, 2, 28, tzinfo=dt.UTC)


def test_the_payer_is_the_advertiser_when_nobody_else_paid() -> None:
    assert AdDraft(AdKind.PAID_AD, "c", "", "Glowlab", "", Targeting()).paid_by == "Glowlab"
