"""Consent with proof (GDPR Art. 7): purposes, decisions, the records that prove them, and the rules.

Without a record the answer is no. A user not known to be an adult cannot consent to ad
profiling (DSA Art. 28; an unknown age counts as a minor, as `Principal.is_adult_on` says),
and CheckConsent says no to ad profiling for a known minor whatever is on record.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from libs.errors import FailedPrecondition, PermissionDenied


class Purpose(enum.Enum):
    DEVICE_STORAGE = "DEVICE_STORAGE"
    PERSONALISED_CONTENT = "PERSONALISED_CONTENT"  # the personalised feed
    PERSONALISED_ADS = "PERSONALISED_ADS"
    AD_MEASUREMENT = "AD_MEASUREMENT"
    PRODUCT_ANALYTICS = "PRODUCT_ANALYTICS"
    MARKETING_MESSAGES = "MARKETING_MESSAGES"
    AFFILIATE_TRACKING = "AFFILIATE_TRACKING"


class Decision(enum.Enum):
    GRANTED = "GRANTED"
    REFUSED = "REFUSED"
    WITHDRAWN = "WITHDRAWN"


class Method(enum.Enum):
    IN_APP_DIALOG = "IN_APP_DIALOG"
    SETTINGS_TOGGLE = "SETTINGS_TOGGLE"
    TCF_CMP = "TCF_CMP"
    SUPPORT_REQUEST = "SUPPORT_REQUEST"


class Basis(enum.Enum):
    CONSENT_GRANTED = "CONSENT_GRANTED"
    NO_DECISION = "NO_DECISION"
    REFUSED_OR_WITHDRAWN = "REFUSED_OR_WITHDRAWN"
    SUBJECT_IS_MINOR = "SUBJECT_IS_MINOR"


# Profiling for ads: what a minor may never consent to, nor be subjected to.
AD_PROFILING = frozenset({Purpose.PERSONALISED_ADS})

# Which TCF purposes (1-11) decide each platform purpose: all of them consented means granted.
TCF_PURPOSES: Mapping[Purpose, frozenset[int]] = {
    Purpose.DEVICE_STORAGE: frozenset({1}),
    Purpose.PERSONALISED_ADS: frozenset({3, 4}),
    Purpose.PERSONALISED_CONTENT: frozenset({5, 6}),
    Purpose.AD_MEASUREMENT: frozenset({7}),
    Purpose.PRODUCT_ANALYTICS: frozenset({8, 9, 10}),
}


@dataclass(frozen=True)
class Subject:
    """Whose consent is decided, and what the verified tokens say about them."""

    user: str  # users/{user}
    adult: bool | None  # None: the call carried no token of the user, so their age is unknown here


@dataclass(frozen=True)
class DecisionDraft:
    """One decision as the caller states it, before it is recorded."""

    purpose: Purpose
    decision: Decision
    notice_version: str
    method: Method
    decision_time: dt.datetime
    jurisdiction: str
    source: str


@dataclass(frozen=True)
class ConsentRecord:
    """A stored decision: the evidence. `version` is the subject's consent version after it."""

    record_id: str
    subject: str
    draft: DecisionDraft
    record_time: dt.datetime
    recorded_by: str
    version: int

    @property
    def name(self) -> str:
        return f"{self.subject}/consentRecords/{self.record_id}"


@dataclass(frozen=True)
class SubjectState:
    """The latest record per purpose and the subject's consent version (0: nothing recorded)."""

    version: int
    latest: Mapping[Purpose, ConsentRecord]


@dataclass(frozen=True)
class PurposeAnswer:
    purpose: Purpose
    permitted: bool
    basis: Basis


def check(state: SubjectState, purposes: Iterable[Purpose], *, subject_is_minor: bool) -> list[PurposeAnswer]:
    """Whether each purpose may be processed now, in the order asked."""
    answers = []
    for purpose in purposes:
        record = state.latest.get(purpose)
        if purpose in AD_PROFILING and subject_is_minor:
            answers.append(PurposeAnswer(purpose, False, Basis.SUBJECT_IS_MINOR))
        elif record is None:
            answers.append(PurposeAnswer(purpose, False, Basis.NO_DECISION))
        elif record.draft.decision is Decision.GRANTED:
            answers.append(PurposeAnswer(purpose, True, Basis.CONSENT_GRANTED))
        else:
            answers.append(PurposeAnswer(purpose, False, Basis.REFUSED_OR_WITHDRAWN))
    return answers


def require_may_consent(subject: Subject, drafts: Iterable[DecisionDraft]) -> None:
    """A grant of ad profiling needs a subject known to be an adult."""
    for draft in drafts:
        if draft.decision is Decision.GRANTED and draft.purpose in AD_PROFILING and subject.adult is not True:
            raise FailedPrecondition(
                "a user not known to be an adult cannot consent to ad profiling (DSA Art. 28)",
                reason="MINOR_AD_PROFILING", metadata={"purpose": draft.purpose.value})


def decisions_from_tcf(purposes_consent: frozenset[int]) -> dict[Purpose, Decision]:
    """What a TC string decides for each platform purpose it covers."""
    return {purpose: Decision.GRANTED if tcf <= purposes_consent else Decision.REFUSED
            for purpose, tcf in TCF_PURPOSES.items()}


def fingerprint(kind: str, subject: str, parameters: Mapping[str, object]) -> str:
    """What a request asked, in a stable spelling: the same request id must come back with the same."""
    text = json.dumps({"kind": kind, "subject": subject, **parameters}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# -- who may call -------------------------------------------------------------------------------


class Access(enum.Enum):
    """The three kinds of caller the consent RPCs name in their proto comments."""

    SUBJECT = "the subject"
    SERVICE_FOR_SUBJECT = "a service for the subject"
    SERVICE = "a service"
    OFFICER = "an officer"


@dataclass(frozen=True)
class Caller:
    """The verified caller, reduced to what the rules read."""

    subject: str  # the token's subject
    is_service: bool
    is_officer: bool
    on_behalf_of: str  # the user a service acts for, or ''


def require_access(caller: Caller, user: str, allowed: frozenset[Access]) -> None:
    """PermissionDenied unless the caller is one of `allowed` for `user`."""
    if Access.SERVICE in allowed and caller.is_service and caller.on_behalf_of in ("", user):
        return
    if Access.SERVICE_FOR_SUBJECT in allowed and caller.is_service and caller.on_behalf_of == user:
        return
    if Access.SUBJECT in allowed and not caller.is_service and caller.subject == user:
        return
    if Access.OFFICER in allowed and caller.is_officer and not caller.is_service:
        return
    raise PermissionDenied(
        f"{caller.subject} may not do this for {user}: allowed are {', '.join(sorted(a.value for a in allowed))}",
        reason="CONSENT_CALLER_NOT_ALLOWED", metadata={"subject": user})
