"""ConsentService messages <-> the consent domain."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from limelight.compliance.v1 import consent_pb2

from libs.resource_names import ResourcePattern
from libs.timestamps import from_timestamp, to_timestamp
from services.compliance.consent import tcf
from services.compliance.consent.model import (
    ConsentRecord,
    Decision,
    DecisionDraft,
    Method,
    Purpose,
    PurposeAnswer,
    SubjectState,
)

USER = ResourcePattern("users/{user}")
CONSENT_RECORD = ResourcePattern("users/{user}/consentRecords/{consent_record}")


def user_in(parent: str) -> str:
    """The `users/{user}` a request names (protovalidate checked the shape; this names the field on error)."""
    USER.parse(parent, field="parent")
    return parent


def purpose_in(value: int) -> Purpose:
    return Purpose[consent_pb2.ConsentPurpose.Name(value).removeprefix("CONSENT_PURPOSE_")]


def purpose_out(purpose: Purpose) -> str:
    return "CONSENT_PURPOSE_" + purpose.value


def decision_in(value: int) -> Decision:
    return Decision[consent_pb2.ConsentDecision.Name(value).removeprefix("CONSENT_DECISION_")]


def method_in(value: int, *, default: Method | None = None) -> Method:
    if value == consent_pb2.CONSENT_METHOD_UNSPECIFIED and default is not None:
        return default
    return Method[consent_pb2.ConsentMethod.Name(value).removeprefix("CONSENT_METHOD_")]


def draft_in(request: consent_pb2.RecordConsentRequest) -> DecisionDraft:
    return DecisionDraft(
        purpose=purpose_in(request.purpose), decision=decision_in(request.decision),
        notice_version=request.notice_version, method=method_in(request.method),
        decision_time=from_timestamp(request.decision_time, field="decision_time"),
        jurisdiction=request.jurisdiction, source=request.source)


def record_out(record: ConsentRecord) -> consent_pb2.ConsentRecord:
    draft = record.draft
    return consent_pb2.ConsentRecord(
        name=record.name, purpose=purpose_out(draft.purpose),
        decision="CONSENT_DECISION_" + draft.decision.value,
        notice_version=draft.notice_version, method="CONSENT_METHOD_" + draft.method.value,
        decision_time=to_timestamp(draft.decision_time), record_time=to_timestamp(record.record_time),
        recorded_by=record.recorded_by, jurisdiction=draft.jurisdiction, source=draft.source, version=record.version)


def tcf_out(tc_string: str, tc: tcf.TcString) -> consent_pb2.TcfConsent:
    return consent_pb2.TcfConsent(
        tc_string=tc_string, cmp_id=tc.cmp_id, cmp_version=tc.cmp_version, vendor_list_version=tc.vendor_list_version,
        policy_version=tc.policy_version, create_time=to_timestamp(tc.created), update_time=to_timestamp(tc.last_updated),
        purposes_consent=sorted(tc.purposes_consent), purposes_legitimate_interest=sorted(tc.purposes_legitimate_interest),
        special_features_opt_in=sorted(tc.special_features_opt_in), vendor_consents=sorted(tc.vendor_consents.vendors),
        vendor_legitimate_interests=sorted(tc.vendor_legitimate_interests.vendors),
        disclosed_vendors=sorted(tc.disclosed_vendors.vendors) if tc.disclosed_vendors else [],
        publisher_restrictions=[consent_pb2.TcfPublisherRestriction(
            purpose=r.purpose, restriction_type=r.restriction_type, vendors=sorted(r.vendors))
            for r in tc.publisher_restrictions],
        consent_language=tc.consent_language, publisher_country_code=tc.publisher_country_code,
        framework_version=tc.framework_version)


def state_out(state: SubjectState, tc_string: str, tc: tcf.TcString | None) -> consent_pb2.GetConsentStateResponse:
    granted_by_tcf = {purpose for purpose, record in state.latest.items()
                      if record.draft.method is Method.TCF_CMP and record.draft.decision is Decision.GRANTED}
    response = consent_pb2.GetConsentStateResponse(purposes=[
        consent_pb2.PurposeConsent(
            purpose=purpose_out(purpose),
            decision="CONSENT_DECISION_" + state.latest[purpose].draft.decision.value
            if purpose in state.latest else "CONSENT_DECISION_UNSPECIFIED",
            record=state.latest[purpose].name if purpose in state.latest else "",
            granted_by_tcf=purpose in granted_by_tcf)
        for purpose in Purpose])
    if tc is not None:
        response.tcf.CopyFrom(tcf_out(tc_string, tc))
    return response


def purposes_in(values: Iterable[int]) -> list[Purpose]:
    return [purpose_in(value) for value in values]


def check_out(answers: Sequence[PurposeAnswer], version: int) -> consent_pb2.CheckConsentResponse:
    return consent_pb2.CheckConsentResponse(version=version, decisions=[
        consent_pb2.PurposeDecision(purpose=purpose_out(a.purpose), permitted=a.permitted,
                                    basis="CONSENT_BASIS_" + a.basis.value)
        for a in answers])


def change_out(subject: str, version: int, purposes: Sequence[Purpose]) -> consent_pb2.WatchConsentChangesResponse:
    return consent_pb2.WatchConsentChangesResponse(sequence=version, subject=subject,
                                                   purposes=[purpose_out(p) for p in purposes])
