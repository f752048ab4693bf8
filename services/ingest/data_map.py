"""What ingest keeps about people, why, and for how long (GDPR Art. 30): its record of processing.

Erasure reaches ingest by crypto-shredding (`libs.privacy`) of the fields below, and by deleting
the creator's uploaded media.
"""

from __future__ import annotations

from libs.privacy.data_map import DataMap, NotPersonal, PersonalField, ProcessingActivity

DATA_MAP = DataMap(
    service="services/ingest",
    activities=(
        ProcessingActivity(
            activity_id="ingest.video_publishing",
            purpose="Receiving, transcoding and publishing the videos creators upload",
            legal_basis="Art. 6(1)(b) GDPR (performance of the contract)",
            subject_categories=("creators", "people shown in videos"),
            data_categories=("captions and hashtags", "upload file names", "video and audio content"),
            recipients=("compliance (disclosure review)", "ranking (recommendation)", "viewers (published videos)"),
            retention="until the creator deletes the video or is erased",
        ),
    ),
    personal_fields=(
        PersonalField("uploads.caption_sealed", "free text written by the creator (caption)", sealed=True),
        PersonalField("videos.caption_sealed", "free text written by the creator (caption)", sealed=True),
        PersonalField("uploads.filename_sealed", "file name chosen by the creator", sealed=True),
        # Rows written before schema 5 keep their caption and file name here in the clear; newer rows
        # store the caption as "" and no file name.
        PersonalField("uploads.metadata_json", "caption of rows older than schema 5", sealed=False),
        PersonalField("videos.metadata_json", "caption of rows older than schema 5", sealed=False),
        PersonalField("uploads.filename", "file name of rows older than schema 5", sealed=False),
    ),
    not_personal=(
        NotPersonal("uploads.creator_id", "opaque user id"),
        NotPersonal("videos.creator_id", "opaque user id"),
        NotPersonal("videos.failure_message", "the transcoder's diagnostics"),
        NotPersonal("videos.ad_name", "the DSA ad repository entry's resource name (ads/{id})"),
        NotPersonal("transcode_jobs.failure_message", "the transcoder's diagnostics"),
    ),
)
