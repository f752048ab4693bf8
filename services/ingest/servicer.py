"""Ingest's gRPC handlers: proto -> use case -> proto, nothing else.

The kit has authenticated the caller and validated each message against the proto's
rules before a handler runs; the use cases decide everything else.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import grpc
from limelight.ingest.v1 import ingest_pb2, ingest_pb2_grpc

from libs.clock import Clock
from libs.errors import InvalidArgument, OutOfRange
from libs.kit.context import current_principal
from services.ingest import messages
from services.ingest.model import CREATOR, UPLOAD, VIDEO
from services.ingest.uploads import UploadSession
from services.ingest.usecases import Ingest
from services.ingest.usecases.uploading import BeginUpload

Context = grpc.aio.ServicerContext[object, object]
SERVICE = "services/ingest"


class IngestServicer(ingest_pb2_grpc.IngestServiceServicer):
    def __init__(self, ingest: Ingest, *, playback_base_url: str, clock: Clock) -> None:
        self._ingest = ingest
        self._playback = playback_base_url
        self._clock = clock

    async def UploadVideo(self, request_iterator: AsyncIterator[ingest_pb2.UploadVideoRequest],
                          context: Context) -> ingest_pb2.UploadVideoResponse:
        principal = current_principal()
        uploads = self._ingest.uploads
        requests = aiter(request_iterator)
        session = await self._opened_session(await anext(requests, None))
        writer = uploads.writer(principal, session)
        try:
            async for request in requests:
                if request.WhichOneof("part") != "chunk":
                    raise InvalidArgument.for_field("part", "only `chunk` messages may follow the first",
                                                    reason="UPLOAD_UNEXPECTED_MESSAGE")
                await writer.write(request.chunk.offset, request.chunk.data)
        finally:
            # Also when the client dropped: what arrived is committed, so a resume starts there.
            # Shielded: the call being cancelled must not cancel the commit of what it received.
            await asyncio.shield(writer.flush())
        video = await self._ingest.complete_upload(principal, session.upload_id)
        completed = await uploads.get(principal, session.creator_id, session.upload_id)
        return ingest_pb2.UploadVideoResponse(upload=messages.upload_out(completed, self._clock()),
                                              video=messages.video_out(video, self._playback))

    async def _opened_session(self, first: ingest_pb2.UploadVideoRequest | None) -> UploadSession:
        principal = current_principal()
        part = first.WhichOneof("part") if first is not None else None
        if first is not None and part == "start":
            start = first.start
            return await self._ingest.uploads.begin(principal, BeginUpload(
                creator_id=CREATOR.parse(start.parent, field="start.parent")["creator"], upload_id=start.upload_id,
                metadata=messages.metadata_in(start.metadata), size_bytes=start.size_bytes,
                sha256_hex=start.sha256, filename=start.filename))
        if first is not None and part == "resume":
            resume = first.resume
            upload = UPLOAD.parse(resume.upload, field="resume.upload")
            session = await self._ingest.uploads.resume(principal, upload["creator"], upload["upload"])
            if resume.offset > session.committed_bytes:
                raise OutOfRange(f"resume offset {resume.offset} is past the {session.committed_bytes} bytes "
                                 "received", reason="UPLOAD_OFFSET_MISMATCH",
                                 metadata={"committed_offset": str(session.committed_bytes)})
            return session
        raise InvalidArgument.for_field("part", "the first message must be `start` or `resume`",
                                        reason="UPLOAD_START_MISSING")

    async def GetUpload(self, request: ingest_pb2.GetUploadRequest, context: Context) -> ingest_pb2.GetUploadResponse:
        upload = UPLOAD.parse(request.name)
        session = await self._ingest.uploads.get(current_principal(), upload["creator"], upload["upload"])
        return ingest_pb2.GetUploadResponse(upload=messages.upload_out(session, self._clock()))

    async def GetVideo(self, request: ingest_pb2.GetVideoRequest, context: Context) -> ingest_pb2.GetVideoResponse:
        name = VIDEO.parse(request.name)
        video = await self._ingest.videos.get(current_principal(), name["creator"], name["video"])
        return ingest_pb2.GetVideoResponse(video=messages.video_out(video, self._playback))

    async def ListVideos(self, request: ingest_pb2.ListVideosRequest,
                         context: Context) -> ingest_pb2.ListVideosResponse:
        page = await self._ingest.videos.list(current_principal(), CREATOR.parse(request.parent, field="parent")["creator"],
                                        request.page_size, request.page_token,
                                        messages.video_state_in(request.state))
        return ingest_pb2.ListVideosResponse(videos=[messages.video_out(v, self._playback) for v in page.videos],
                                             next_page_token=page.next_page_token)

    async def WatchVideo(self, request: ingest_pb2.WatchVideoRequest,
                         context: Context) -> AsyncIterator[ingest_pb2.WatchVideoResponse]:
        name = VIDEO.parse(request.name)
        updates = self._ingest.videos.watch(current_principal(), name["creator"], name["video"])
        async for video in updates:
            yield ingest_pb2.WatchVideoResponse(video=messages.video_out(video, self._playback))
