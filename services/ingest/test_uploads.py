from __future__ import annotations

import datetime as dt

import pytest

from libs.errors import AlreadyExists, FailedPrecondition, InvalidArgument, OutOfRange
from services.ingest.model import VideoMetadata
from services.ingest.uploads import (
    UploadLimits,
    UploadSession,
    UploadState,
    bytes_to_skip,
    ensure_same_upload,
    validate_declaration,
    verify_checksum,
)

NOW = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
SHA = "ab" * 32


def session(committed: int = 100, size: int = 1000, state: UploadState = UploadState.RECEIVING) -> UploadSession:
    return UploadSession("u1", "c1", VideoMetadata(), size, SHA, committed, state, NOW, NOW + dt.timedelta(days=1))


def test_a_chunk_at_the_committed_offset_is_taken_whole() -> None:
    assert bytes_to_skip(session(), 100, 100, 50, NOW) == 0


def test_a_resume_from_an_older_acknowledgement_skips_what_is_already_committed() -> None:
    assert bytes_to_skip(session(), 100, 60, 50, NOW) == 40
    assert bytes_to_skip(session(), 100, 0, 50, NOW) == 50


def test_within_a_stream_chunks_must_follow_on_exactly() -> None:
    assert bytes_to_skip(session(), 150, 150, 10, NOW) == 0
    with pytest.raises(OutOfRange):
        bytes_to_skip(session(), 150, 120, 10, NOW)


@pytest.mark.parametrize("offset", [101, 5000, -1])
def test_a_gap_after_the_committed_offset_is_refused_with_the_offset_to_resume_from(offset: int) -> None:
    with pytest.raises(OutOfRange) as raised:
        bytes_to_skip(session(), 100, offset, 10, NOW)
    assert raised.value.reason == "UPLOAD_OFFSET_MISMATCH"
    assert raised.value.metadata["committed_offset"] == "100"


def test_bytes_past_the_declared_size_are_refused() -> None:
    with pytest.raises(OutOfRange) as raised:
        bytes_to_skip(session(), 100, 100, 901, NOW)
    assert raised.value.reason == "UPLOAD_EXCEEDS_DECLARED_SIZE"


def test_closed_or_expired_sessions_take_nothing() -> None:
    with pytest.raises(FailedPrecondition):
        bytes_to_skip(session(state=UploadState.COMPLETED), 100, 100, 1, NOW)
    with pytest.raises(FailedPrecondition) as raised:
        bytes_to_skip(session(), 100, 100, 1, NOW + dt.timedelta(days=2))
    assert raised.value.reason == "UPLOAD_EXPIRED"
    assert session().state_at(NOW + dt.timedelta(days=2)) is UploadState.EXPIRED


def test_starting_a_known_upload_id_again_must_describe_the_same_upload() -> None:
    ensure_same_upload(session(), "c1", VideoMetadata(), 1000, SHA)
    for changed in [("c2", VideoMetadata(), 1000, SHA), ("c1", VideoMetadata(caption="x"), 1000, SHA),
                    ("c1", VideoMetadata(), 999, SHA), ("c1", VideoMetadata(), 1000, "cd" * 32)]:
        with pytest.raises(AlreadyExists):
            ensure_same_upload(session(), *changed)


@pytest.mark.parametrize("size,digest,reason", [
    (0, SHA, "UPLOAD_EMPTY"),
    (512 * 1024**2 + 1, SHA, "UPLOAD_TOO_LARGE"),
    (10, "AB" * 32, "CHECKSUM_MALFORMED"),
    (10, "ab" * 31, "CHECKSUM_MALFORMED"),
])
def test_declarations_over_the_cap_or_with_a_bad_checksum_are_refused(size: int, digest: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate_declaration("4d3c2b1a-0000-4000-8000-000000000001", size, digest, UploadLimits())
    assert raised.value.reason == reason


def test_an_upload_id_that_cannot_name_a_video_is_refused_in_words() -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate_declaration("4D3C2B1A-0000-4000-8000-000000000001", 10, SHA, UploadLimits())
    assert raised.value.reason == "UPLOAD_ID_INVALID"
    assert "lowercase" in raised.value.message and "^" not in raised.value.message


def test_the_checksum_must_match_the_declared_one() -> None:
    verify_checksum(session(), SHA)
    with pytest.raises(InvalidArgument) as raised:
        verify_checksum(session(), "cd" * 32)
    assert raised.value.reason == "CHECKSUM_MISMATCH"
