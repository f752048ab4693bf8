from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from libs.auth.principal import Principal, Role
from services.ingest.model import (
    AiLabel,
    CommercialDeclaration,
    CommercialRelationship,
    ComplianceReview,
    DisclosureVerdict,
    ProcessingStage,
    Video,
    VideoMetadata,
    VideoState,
    may_manage,
    may_upload,
    may_view,
    publication_change,
)
from services.ingest.probe import MediaProbe

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
LATER = dt.datetime(2099, 1, 1, tzinfo=dt.UTC)
PROBE = MediaProbe("mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", 4.0, 1080, 1920, 0, 120, 30.0, False)
DRAFT = Video("v1", "alice", VideoMetadata(), VideoState.READY, ProcessingStage.DONE, T0, T0, PROBE)


def principal(subject: str, *roles: Role, acting_for: str = "") -> Principal:
    user = Principal(acting_for, frozenset({Role.CREATOR}), LATER) if acting_for else None
    return Principal(subject, frozenset(roles), LATER, on_behalf_of=user)


# (who, may they see all of alice's videos and uploads)
ACCESS = [
    (principal("users/alice", Role.CREATOR), True),
    (principal("users/bob", Role.CREATOR), False),
    (principal("users/bob", Role.VIEWER), False),
    (principal("users/olga", Role.COMPLIANCE_OFFICER), True),
    (principal("users/root", Role.ADMIN), True),
    (principal("services/ranking", Role.SERVICE), True),
    # A name proves nothing: only the verified role makes a service.
    (principal("services/gifts", Role.VIEWER), False),
    (principal("services/gifts"), False),
    # A service acting for a user has exactly that user's rights.
    (principal("services/shop", Role.SERVICE, acting_for="users/alice"), True),
    (principal("services/shop", Role.SERVICE, acting_for="users/bob"), False),
]


@pytest.mark.parametrize(("who", "allowed"), ACCESS, ids=[f"{w.subject}:{sorted(w.roles)}" for w, _ in ACCESS])
def test_who_may_see_a_creators_unpublished_videos(who: Principal, allowed: bool) -> None:
    assert may_manage(who, "alice") is allowed
    assert may_view(who, DRAFT) is allowed
    assert may_view(who, dataclasses.replace(DRAFT, published_at=T0))  # published: everyone


def test_only_the_creator_uploads_to_their_account() -> None:
    assert may_upload(principal("users/alice", Role.CREATOR), "alice")
    assert may_upload(principal("services/shop", Role.SERVICE, acting_for="users/alice"), "alice")
    assert not may_upload(principal("users/root", Role.ADMIN), "alice")
    assert not may_upload(principal("services/ranking", Role.SERVICE), "alice")


def test_the_labels_shown_are_the_required_disclosure_then_the_german_ai_label() -> None:
    review = ComplianceReview(DisclosureVerdict.LABEL_REQUIRED, "Werbung", AiLabel.AI_GENERATED)
    assert review.shown_labels == ("Werbung", "KI-generiert")
    assert ComplianceReview(DisclosureVerdict.COMPLIANT, ai_label=AiLabel.AI_EDITED).shown_labels == ("KI-bearbeitet",)
    assert ComplianceReview(DisclosureVerdict.COMPLIANT, ai_label=AiLabel.NONE).shown_labels == ()
    # Compliance's own wording (the deepfake disclosure included) wins over the default.
    assert ComplianceReview(DisclosureVerdict.COMPLIANT, ai_label=AiLabel.AI_GENERATED,
                            ai_label_text="KI-generiert: zeigt keine echte Person").shown_labels == (
        "KI-generiert: zeigt keine echte Person",)


def test_a_change_is_audited_as_publishing_or_holding_only_when_it_does_that() -> None:
    held = dataclasses.replace(DRAFT, review=ComplianceReview(DisclosureVerdict.NON_COMPLIANT, ai_label=AiLabel.NONE))
    published = dataclasses.replace(DRAFT, published_at=T0)
    assert publication_change(DRAFT, published) == "ingest.PublishVideo"
    assert publication_change(DRAFT, held) == "ingest.HoldVideo"
    assert publication_change(published, published) == ""
    assert publication_change(held, held) == ""
    assert publication_change(DRAFT, DRAFT) == ""


def reviewed(review: ComplianceReview, **changes: object) -> Video:
    return dataclasses.replace(DRAFT, review=review, **changes)  # type: ignore[arg-type]


def test_the_publication_rules_follow_both_verdicts() -> None:
    def publication(verdict: DisclosureVerdict, ai: AiLabel = AiLabel.NONE, ai_review: bool = False) -> str:
        return ComplianceReview(verdict, ai_label=ai, ai_needs_review=ai_review).publication.value

    assert publication(DisclosureVerdict.COMPLIANT) == "PUBLISHED"
    assert publication(DisclosureVerdict.LABEL_REQUIRED) == "PUBLISHED"  # the platform shows the label
    assert publication(DisclosureVerdict.NON_COMPLIANT) == "HELD"
    assert publication(DisclosureVerdict.NEEDS_REVIEW) == "HELD"
    assert publication(DisclosureVerdict.COMPLIANT, AiLabel.AI_GENERATED, ai_review=True) == "HELD"
    # An engine that did not answer one check: never published.
    assert publication(DisclosureVerdict.COMPLIANT, AiLabel.UNSPECIFIED) == "PENDING_REVIEW"
    assert publication(DisclosureVerdict.UNSPECIFIED) == "PENDING_REVIEW"


def test_the_publication_note_says_what_a_video_rests_on_or_waits_for() -> None:
    pending = reviewed(ComplianceReview(DisclosureVerdict.COMPLIANT))
    assert pending.publication_note.startswith("pending review: waiting for compliance's AI-content verdict")
    nothing = reviewed(ComplianceReview())
    assert ("compliance's advertising-disclosure verdict and compliance's AI-content verdict"
            in nothing.publication_note)
    review = reviewed(ComplianceReview(DisclosureVerdict.NEEDS_REVIEW, ai_label=AiLabel.NONE))
    assert review.publication_note == ("held until a compliance officer's review of the advertising disclosure")
    ai_review = reviewed(ComplianceReview(DisclosureVerdict.COMPLIANT, ai_label=AiLabel.AI_EDITED, ai_needs_review=True))
    assert ai_review.publication_note == "held until a compliance officer's review of the AI-content evidence"
    held = reviewed(ComplianceReview(DisclosureVerdict.NON_COMPLIANT, ai_label=AiLabel.NONE))
    assert "does not comply (see the findings)" in held.publication_note
    labelled = reviewed(ComplianceReview(DisclosureVerdict.LABEL_REQUIRED, "Werbung", AiLabel.AI_GENERATED,
                                         required_placement="BEFORE_CONTENT", ai_label_text="KI-generiert (Deepfake)"),
                        published_at=T0)
    assert labelled.publication_note == ("published with the labels 'Werbung', 'KI-generiert (Deepfake)' "
                                         "('Werbung' shown before the content)")
    assert reviewed(ComplianceReview(DisclosureVerdict.COMPLIANT, ai_label=AiLabel.NONE),
                    published_at=T0).publication_note == "published without labels"


def test_commercial_content_is_what_was_declared_or_found_to_be_advertising() -> None:
    declared = dataclasses.replace(DRAFT, metadata=VideoMetadata(
        commercial=CommercialDeclaration(CommercialRelationship.FREE_PRODUCT, "Acme")))
    assert declared.is_commercial
    assert reviewed(ComplianceReview(DisclosureVerdict.NON_COMPLIANT, is_advertising=True)).is_commercial
    assert not reviewed(ComplianceReview(DisclosureVerdict.COMPLIANT, ai_label=AiLabel.NONE)).is_commercial
