"""Reading: one video, a creator's videos a page at a time, and a video's changes as they happen."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass

from libs.auth.principal import Principal
from libs.errors import NotFound, PermissionDenied
from libs.pagination import PageTokens, page_size
from libs.timestamps import epoch_us, from_epoch_us
from services.ingest.model import Video, VideoState, creator_name, may_manage, may_view, video_name
from services.ingest.usecases.ports import IngestStore

VIDEO_PAGES = PageTokens("ingest.ListVideos")


@dataclass(frozen=True)
class VideoPage:
    videos: list[Video]
    next_page_token: str


class Videos:
    def __init__(self, *, store: IngestStore, watch_poll: dt.timedelta) -> None:
        self._store = store
        self._watch_poll = watch_poll

    async def get(self, viewer: Principal, creator_id: str, video_id: str) -> Video:
        video = await self._store.get_video(video_id)
        if video is None or video.creator_id != creator_id or not may_view(viewer, video):
            # The same answer for "missing" and "not yours": no probing for other creators' drafts.
            raise NotFound(f"no video {video_id}", resource_name=video_name(creator_id, video_id),
                           reason="VIDEO_NOT_FOUND")
        return video

    async def list(self, viewer: Principal, creator_id: str, requested_size: int, page_token: str,
                   state: VideoState | None = None) -> VideoPage:
        """A creator's videos, newest first, a page at a time (the token is bound to the filter)."""
        if not may_manage(viewer, creator_id):
            raise PermissionDenied("creators list only their own videos", reason="NOT_OWN_VIDEOS",
                                   metadata={"parent": creator_name(creator_id)})
        size = page_size(requested_size)
        listing = f"{creator_name(creator_id)}|state={state.value if state else ''}"
        position = VIDEO_PAGES.decode(page_token, bound_to=listing, shape=(int, str))
        after = None if position is None else (from_epoch_us(int(position[0])), str(position[1]))
        videos = await self._store.list_videos(creator_id, size + 1, after, state)
        if len(videos) <= size:
            return VideoPage(videos, "")
        last = videos[size - 1]
        return VideoPage(videos[:size], VIDEO_PAGES.encode(epoch_us(last.created_at), last.video_id,
                                                           bound_to=listing))

    async def watch(self, viewer: Principal, creator_id: str, video_id: str) -> AsyncIterator[Video]:
        """The video now, then after every change, until it is READY or FAILED."""
        video = await self.get(viewer, creator_id, video_id)
        yield video
        version = video.version
        while not video.is_finished:
            await asyncio.sleep(self._watch_poll.total_seconds())
            if self._store.video_version(video_id) == version:
                continue
            video = await self.get(viewer, creator_id, video_id)
            version = video.version
            yield video
