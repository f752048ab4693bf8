"""The in-memory states CheckConsent answers from, and the caller rules: unit tests, no I/O."""

from __future__ import annotations

import datetime as dt

import pytest

from libs.errors import PermissionDenied
from services.compliance.consent.model import (
    Access,
    Basis,
    Caller,
    ConsentRecord,
    Decision,
    DecisionDraft,
    Method,
    Purpose,
    SubjectState,
    check,
    require_access,
)
from services.compliance.consent.usecases import ConsentStates

NOW = dt.datetime(2026, 6, 1, tzinfo=dt.UTC)
FEED = Purpose.PERSONALISED_CONTENT


def record(version: int, decision: Decision, purpose: Purpose = FEED) -> ConsentRecord:
    draft = DecisionDraft(purpose, decision, "n1", Method.SETTINGS_TOGGLE, NOW, "DE", "ios")
    return ConsentRecord(f"r{version}", "users/ana", draft, NOW, "users/ana", version)


def state(*records: ConsentRecord) -> SubjectState:
    return SubjectState(max((r.version for r in records), default=0), {r.draft.purpose: r for r in records})


def test_a_read_older_than_a_committed_write_is_not_remembered() -> None:
    states = ConsentStates()
    states.apply("users/ana", [record(2, Decision.WITHDRAWN)])  # committed while ana was not remembered
    states.remember("users/ana", state(record(1, Decision.GRANTED)))  # a read that started before it
    assert states.cached("users/ana") is None


def test_writes_update_a_remembered_state_and_older_ones_never_replace_it() -> None:
    states = ConsentStates()
    states.remember("users/ana", state(record(1, Decision.GRANTED)))
    states.apply("users/ana", [record(2, Decision.WITHDRAWN)])
    states.remember("users/ana", state(record(1, Decision.GRANTED)))
    remembered = states.cached("users/ana")
    assert remembered is not None and remembered.version == 2
    assert check(remembered, [FEED], subject_is_minor=False)[0].basis is Basis.REFUSED_OR_WITHDRAWN


def test_the_oldest_subjects_are_forgotten_beyond_capacity() -> None:
    states = ConsentStates(capacity=2)
    for user in ("users/a", "users/b", "users/c"):
        states.remember(user, state())
    assert states.cached("users/a") is None and states.cached("users/c") is not None


def test_ad_profiling_is_no_for_a_minor_whatever_is_recorded() -> None:
    granted = state(record(1, Decision.GRANTED, Purpose.PERSONALISED_ADS))
    assert check(granted, [Purpose.PERSONALISED_ADS], subject_is_minor=True)[0].basis is Basis.SUBJECT_IS_MINOR
    assert check(granted, [Purpose.PERSONALISED_ADS], subject_is_minor=False)[0].permitted


SERVICE_FOR_ANA = Caller("services/ranking", is_service=True, is_officer=False, on_behalf_of="users/ana")


@pytest.mark.parametrize(("caller", "allowed", "admitted"), [
    (Caller("users/ana", False, False, ""), frozenset({Access.SUBJECT}), True),
    (Caller("users/bob", False, False, ""), frozenset({Access.SUBJECT}), False),
    (SERVICE_FOR_ANA, frozenset({Access.SERVICE_FOR_SUBJECT}), True),
    (Caller("services/ranking", True, False, ""), frozenset({Access.SERVICE_FOR_SUBJECT}), False),
    (Caller("services/ranking", True, False, "users/bob"), frozenset({Access.SERVICE}), False),
    (Caller("services/ranking", True, False, ""), frozenset({Access.SERVICE}), True),
    (Caller("users/olga", False, True, ""), frozenset({Access.OFFICER}), True),
    (Caller("users/olga", False, True, ""), frozenset({Access.SUBJECT, Access.SERVICE_FOR_SUBJECT}), False),
    # A user token naming a services/ subject is not a service.
    (Caller("services/ranking", False, False, "users/ana"), frozenset({Access.SERVICE_FOR_SUBJECT}), False),
])
def test_require_access_admits_exactly_the_named_callers(caller: Caller, allowed: frozenset[Access],
                                                         admitted: bool) -> None:
    if admitted:
        require_access(caller, "users/ana", allowed)
    else:
        with pytest.raises(PermissionDenied):
            require_access(caller, "users/ana", allowed)
