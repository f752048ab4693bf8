"""Read what a C2PA manifest in an uploaded file declares (c2pa-python, offline).

Reports both whether the manifest is *valid* (signatures and hashes check out) and
whether its signer is *trusted* (chains to a trust list); a manifest can be valid but
not trusted, and both facts go to compliance, which decides the AI label. The digital
source types come from the `c2pa.actions` assertions: `.../trainedAlgorithmicMedia`
means AI-generated, `.../compositeWithTrainedAlgorithmicMedia` AI-edited.
"""

from __future__ import annotations

import logging
from typing import Any, BinaryIO

import c2pa

from services.ingest.model import C2paEvidence, C2paValidation

logger = logging.getLogger(__name__)

_ACTIONS_LABELS = ("c2pa.actions", "c2pa.actions.v2")


def read_c2pa(media: BinaryIO, mime_type: str) -> C2paEvidence:
    """The evidence in `media`; ABSENT without a manifest, INVALID when one is broken."""
    try:
        reader = c2pa.Reader.try_create(mime_type, media)
        if reader is None:
            return C2paEvidence()
        with reader:
            state = reader.get_validation_state() or ""
            manifest = reader.get_active_manifest() or {}
    except c2pa.C2paError as error:
        logger.info("unreadable C2PA manifest: %s", error)
        return C2paEvidence(validation=C2paValidation.INVALID)
    return C2paEvidence(
        validation=C2paValidation.INVALID if state == "Invalid" else C2paValidation.VALID,
        trusted=state == "Trusted",
        digital_source_types=_digital_source_types(manifest),
        claim_generator=_claim_generator(manifest),
        signer=str((manifest.get("signature_info") or {}).get("common_name")
                   or (manifest.get("signature_info") or {}).get("issuer") or ""),
    )


def _digital_source_types(manifest: dict[str, Any]) -> tuple[str, ...]:
    found: list[str] = []
    for assertion in manifest.get("assertions") or []:
        if assertion.get("label") not in _ACTIONS_LABELS:
            continue
        for action in (assertion.get("data") or {}).get("actions") or []:
            source_type = action.get("digitalSourceType")
            if isinstance(source_type, str) and source_type not in found:
                found.append(source_type)
    return tuple(found)


def _claim_generator(manifest: dict[str, Any]) -> str:
    info = manifest.get("claim_generator_info") or []
    if info and isinstance(info[0], dict):
        return " ".join(str(info[0].get(key, "")) for key in ("name", "version")).strip()
    return str(manifest.get("claim_generator") or "")
