"""Ingest's part of a data-subject request: export what it holds about a creator, and erase it.

The caption and the file name are sealed under the creator's data key (`store.py`), so the
erasure that matters happens at compliance, when the key is destroyed: this step says what it
reaches. The media files themselves are not yet deleted (see docs/privacy.md).
"""

from __future__ import annotations

from typing import Any

from libs.privacy.subject_data import Erasure
from services.ingest.usecases.ports import IngestStore

PAGE = 500


class SubjectData:
    def __init__(self, *, store: IngestStore) -> None:
        self._store = store

    async def export(self, creator_id: str) -> dict[str, list[dict[str, Any]]]:
        """Every video and upload of the creator, captions and file names decrypted; {} when none."""
        videos, after = [], None
        while True:
            page = await self._store.list_videos(creator_id, PAGE, after)
            videos += page
            if len(page) < PAGE:
                break
            after = (page[-1].created_at, page[-1].video_id)
        uploads = await self._store.uploads_of(creator_id)
        exported: dict[str, list[dict[str, Any]]] = {}
        if videos:
            exported["videos"] = [{"name": video.name, "caption": video.metadata.caption,
                                   "hashtags": list(video.metadata.hashtags), "state": video.state.value,
                                   "create_time": video.created_at.isoformat()} for video in videos]
        if uploads:
            exported["uploads"] = [{"upload_id": upload.upload_id, "filename": upload.filename,
                                    "caption": upload.metadata.caption, "state": upload.state.value,
                                    "create_time": upload.created_at.isoformat()} for upload in uploads]
        return exported

    async def erase(self, creator_id: str) -> Erasure:
        uploads = await self._store.uploads_of(creator_id)
        return Erasure(f"{len(uploads)} uploads: captions and file names are sealed under the data key and "
                       "unreadable once it is destroyed; the media files are kept (their deletion is not built yet)")
