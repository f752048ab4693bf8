"""What compliance keeps about people (GDPR Art. 30): the audit trail, the ad repository, consent
decisions, the data keys and data-subject requests."""

from __future__ import annotations

from libs.privacy.data_map import DataMap, NotPersonal, PersonalField, ProcessingActivity

DATA_MAP = DataMap(
    service="services/compliance",
    activities=(
        ProcessingActivity(
            activity_id="compliance.audit_trail",
            purpose="A tamper-evident record of every state change a regulator cares about",
            legal_basis="Art. 6(1)(c) GDPR (accountability, Art. 5(2); DSA record keeping)",
            subject_categories=("every user an event is about",),
            data_categories=("pseudonymous subject references (HMAC)", "resource names", "actions and times"),
            recipients=("regulators and auditors on request",),
            retention="for the life of the log; pseudonymous, it holds nothing an erasure must remove",
        ),
        ProcessingActivity(
            activity_id="compliance.ad_repository",
            purpose="The public ad repository (DSA Art. 39)",
            legal_basis="Art. 6(1)(c) GDPR (DSA Art. 39)",
            subject_categories=("advertisers", "creators who publish ads"),
            data_categories=("ad content", "advertiser and payer", "targeting parameters", "reach"),
            recipients=("the public",),
            retention="one year after the ad was last displayed (DSA Art. 39(1))",
        ),
        ProcessingActivity(
            activity_id="compliance.consent_records",
            purpose="Proof of each consent decision (who, what, notice, method, when, where) and the current state",
            legal_basis="Art. 6(1)(c) GDPR (Art. 7(1): the controller must be able to demonstrate consent)",
            subject_categories=("every user who decides on a purpose",),
            data_categories=("purpose and decision", "notice version, method, jurisdiction and source",
                             "IAB TCF consent strings", "times"),
            recipients=("Limelight services asking CheckConsent (the answer only)", "regulators on request"),
            retention="append-only; 3 years after the end of the year of the subject's last decision "
                      "(§§ 195, 199 BGB), kept through an erasure as proof of consent",
        ),
        ProcessingActivity(
            activity_id="compliance.data_keys",
            purpose="Per-subject data keys that make erasure by crypto-shredding possible",
            legal_basis="Art. 6(1)(c) GDPR (Art. 17 and Art. 32)",
            subject_categories=("every user",),
            data_categories=("wrapped encryption keys",),
            recipients=("Limelight services (unwrapped keys, in memory only)",),
            retention="until the subject is erased",
        ),
        ProcessingActivity(
            activity_id="compliance.data_subject_requests",
            purpose="Answering access, portability, erasure, rectification and review requests (Art. 12-22)",
            legal_basis="Art. 6(1)(c) GDPR (Art. 12 and 5(2): answering, and proving the answer)",
            subject_categories=("every user who makes a request",),
            data_categories=("request type, state and dates", "the subject's own words (sealed)", "exports (sealed)"),
            recipients=("the subject",),
            retention="type, state and dates as proof of the answer; words and exports until erasure",
        ),
    ),
    personal_fields=(
        PersonalField("data_subject_requests.details_sealed", "free text written by the subject", sealed=True),
        PersonalField("data_subject_requests.export", "the access or portability export", sealed=True),
    ),
    not_personal=(
        NotPersonal("audit_event.subject_ref", "HMAC pseudonym (libs.audit.pseudonyms)"),
        NotPersonal("ads.creator", "opaque user id"),
        NotPersonal("ads.name", "the entry's resource name"),
        NotPersonal("data_keys.subject", "opaque user id; the key itself is wrapped"),
        NotPersonal("consent_records.subject", "opaque user id (`users/{id}`)"),
        NotPersonal("consent_records.recorded_by", "the recording caller's resource name: an opaque id"),
        NotPersonal("consent_records.method", "how the decision was given: one of four enum values"),
        NotPersonal("consent_records.source", "where the decision came from: an app or CMP identifier, no device data"),
        NotPersonal("consent_requests.subject", "opaque user id"),
        NotPersonal("tcf_consents.subject", "opaque user id"),
        NotPersonal("tcf_consents.tc_string", "an IAB TCF consent string: purposes and vendors decided, no identifier"),
        NotPersonal("data_subject_requests.user_id", "opaque user id"),
        NotPersonal("data_subject_requests.requested_by", "the requester's resource name: an opaque id"),
        NotPersonal("data_subject_requests.name", "the request's resource name"),
    ),
    retention_exceptions={
        "compliance.audit_trail": "Art. 5(2) and 30 GDPR: the trail is pseudonymous and append-only",
        "compliance.consent_records": "Art. 7(1) and 17(3)(e) GDPR: proof of consent, append-only",
    },
)
