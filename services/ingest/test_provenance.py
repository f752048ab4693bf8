from __future__ import annotations

import io
from pathlib import Path

from services.ingest.model import C2paEvidence, C2paValidation
from services.ingest.probe import probe_media
from services.ingest.provenance import read_c2pa
from services.ingest.sample_clips import AI_GENERATED, sign_c2pa


def test_a_clip_without_a_manifest_has_absent_evidence(clips: dict[str, Path]) -> None:
    with open(clips["portrait"], "rb") as media:
        assert read_c2pa(media, "video/mp4") == C2paEvidence(validation=C2paValidation.ABSENT)


def test_a_signed_ai_clip_is_valid_but_not_trusted_and_names_its_source_type(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    signed = sign_c2pa(clips["no_audio"], tmp_path / "ai.mp4")
    with open(signed, "rb") as media:
        evidence = read_c2pa(media, "video/mp4")
    assert evidence.validation is C2paValidation.VALID and not evidence.trusted
    assert evidence.digital_source_types == (AI_GENERATED,)
    assert evidence.claim_generator == "limelight-tests 1.0" and evidence.signer == "Limelight Test Signer"
    assert probe_media(signed).frame_count == probe_media(clips["no_audio"]).frame_count


def test_a_tampered_manifest_is_invalid(clips: dict[str, Path], tmp_path: Path) -> None:
    signed = bytearray(sign_c2pa(clips["no_audio"], tmp_path / "ai.mp4").read_bytes())
    middle = len(signed) // 2  # inside the media data the manifest's hash covers
    signed[middle:middle + 16] = bytes(16)
    assert read_c2pa(io.BytesIO(bytes(signed)), "video/mp4").validation is C2paValidation.INVALID
