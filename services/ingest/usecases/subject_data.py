"""Ingest's part of a data-subject request: export what it holds about a creator, and erase it.

The caption and the file name are sealed under the creator's data key (`store.py`), so they
become unreadable at compliance, when the key is destroyed. The media (a person's face and
voice) cannot be sealed and served, so the erasure step deletes it: every upload part, source
and rendition first, then the rows, so a step interrupted between the two is finished by the
next run (it is idempotent). Ranking forgets the videos in its own erasure step.
"""

from __future__ import annotations

import asyncio
from typing import Any

from libs.privacy.subject_data import Erasure
from services.ingest.usecases.ports import IngestStore, MediaBlobs

PAGE = 500


class SubjectData:
    def __init__(self, *, store: IngestStore, blobs: MediaBlobs) -> None:
        self._store = store
        self._blobs = blobs

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
        keys, prefixes = await asyncio.to_thread(self._store.media_of, creator_id)
        deleted = await asyncio.to_thread(self._delete_media, keys, prefixes)
        uploads = await self._store.forget_creator(creator_id)
        return Erasure(f"{uploads} uploads and their videos deleted with {deleted} media files; the audit "
                       "trail keeps their pseudonymous events")

    def _delete_media(self, keys: list[str], prefixes: list[str]) -> int:
        listed = [blob.key for prefix in prefixes for blob in self._blobs.list(prefix)]
        for key in [*keys, *listed]:
            self._blobs.delete(key)
        return len(keys) + len(listed)
