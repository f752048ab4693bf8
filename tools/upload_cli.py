"""`limelight upload FILE`: upload a clip to ingest with a progress bar, resuming after drops.

The command is the function `upload` (mount it with `app.command()(upload)`); the
streaming and resume logic is `upload_file`, which tests and benchmarks reuse. A dropped
connection is resumed from the offset the service acknowledges (GetUpload), not from
what the client believes it sent.

    limelight upload clip.mp4 --creator ada --caption "Neue Sneaker" --commercial paid-partnership --brand Acme
"""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Annotated

import grpc
import typer
from limelight.compliance.v1 import disclosure_pb2
from limelight.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from rich.progress import BarColumn, DownloadColumn, Progress, TaskProgressColumn, TextColumn, TransferSpeedColumn

from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit import config
from libs.kit.transport import Transport

DEFAULT_CHUNK = 1024 * 1024
# Transport failures worth resuming after; anything else is the service's considered answer.
_RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED, grpc.StatusCode.DEADLINE_EXCEEDED,
                        grpc.StatusCode.ABORTED})


class Commercial(enum.StrEnum):
    none = "none"
    paid_partnership = "paid-partnership"
    free_product = "free-product"
    affiliate = "affiliate"
    own_brand = "own-brand"


class AiUse(enum.StrEnum):
    none = "none"
    generated = "generated"
    edited = "edited"


async def upload_file(
    stub: ingest_pb2_grpc.IngestServiceAsyncStub,
    path: Path,
    *,
    parent: str,
    metadata: ingest_pb2.VideoMetadata,
    call_metadata: Sequence[tuple[str, str]],
    chunk_size: int = DEFAULT_CHUNK,
    upload_id: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    max_resumes: int = 5,
) -> ingest_pb2.UploadVideoResponse:
    """Stream `path` as one upload; after a dropped connection resume where the service says."""
    size = path.stat().st_size
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(DEFAULT_CHUNK):
            digest.update(block)
    upload_id = upload_id or str(uuid.uuid4())
    name = f"{parent}/uploads/{upload_id}"
    first: ingest_pb2.UploadVideoRequest = ingest_pb2.UploadVideoRequest(start=ingest_pb2.UploadStart(
        parent=parent, upload_id=upload_id, metadata=metadata, size_bytes=size, sha256=digest.hexdigest(),
        filename=path.name))
    offset = 0
    for attempt in range(max_resumes + 1):
        try:
            return await stub.UploadVideo(_messages(path, first, offset, chunk_size, on_progress),
                                          metadata=tuple(call_metadata))
        except grpc.aio.AioRpcError as error:
            if _status_lost_to_a_late_write(error) and first.HasField("start"):
                raise await _refusal_of(stub, first, call_metadata) or error from None
            if error.code() not in _RESUMABLE or attempt == max_resumes:
                raise
        await asyncio.sleep(min(2.0, 0.2 * 2 ** attempt))
        offset = (await stub.GetUpload(ingest_pb2.GetUploadRequest(name=name), metadata=tuple(call_metadata))
                  ).upload.received_bytes
        first = ingest_pb2.UploadVideoRequest(resume=ingest_pb2.UploadResume(upload=name, offset=offset))
    raise AssertionError("unreachable: the last attempt returns or raises")


def _status_lost_to_a_late_write(error: grpc.aio.AioRpcError) -> bool:
    """grpcio's asyncio client replaces the server's status with INTERNAL when a chunk is still
    being written as the server refuses the stream (grpc/grpc#36066)."""
    return error.code() is grpc.StatusCode.INTERNAL and "execute_batch" in (error.debug_error_string() or "")


async def _refusal_of(stub: ingest_pb2_grpc.IngestServiceAsyncStub, start: ingest_pb2.UploadVideoRequest,
                      call_metadata: Sequence[tuple[str, str]]) -> grpc.aio.AioRpcError | None:
    """The service's answer to the start message alone, with no chunk left to race it: the refusal
    the lost status carried (or, for an upload it had begun, how that upload stands)."""
    async def start_only() -> AsyncIterator[ingest_pb2.UploadVideoRequest]:
        yield start

    try:
        await stub.UploadVideo(start_only(), metadata=tuple(call_metadata))
    except grpc.aio.AioRpcError as refusal:
        return refusal
    return None


async def _messages(path: Path, first: ingest_pb2.UploadVideoRequest, offset: int, chunk_size: int,
                    on_progress: Callable[[int], None] | None) -> AsyncIterator[ingest_pb2.UploadVideoRequest]:
    yield first
    with open(path, "rb") as file:
        file.seek(offset)
        while data := file.read(chunk_size):
            yield ingest_pb2.UploadVideoRequest(chunk=ingest_pb2.UploadChunk(offset=offset, data=data))
            offset += len(data)
            if on_progress:
                on_progress(offset)


def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True, help="The clip to upload.")],
    creator: Annotated[str, typer.Option(help="Your creator id (the {creator} of creators/{creator}).")],
    caption: Annotated[str, typer.Option()] = "",
    hashtag: Annotated[list[str] | None, typer.Option(help="Repeat for several; without '#'.")] = None,
    commercial: Annotated[Commercial, typer.Option(help="What you were given or paid, if anything.")] = Commercial.none,
    brand: Annotated[str, typer.Option(help="The brand, for commercial content.")] = "",
    ai: Annotated[AiUse, typer.Option(help="Whether AI generated or edited the clip.")] = AiUse.none,
    label: Annotated[str, typer.Option(help="The disclosure label you show first, e.g. Werbung.")] = "",
    token: Annotated[str, typer.Option(envvar="LIMELIGHT_TOKEN",
                                       help="Bearer token; default: a dev token for the creator.")] = "",
    target: Annotated[str, typer.Option(help="Ingest's address; default from LIMELIGHT_INGEST_TARGET.")] = "",
    watch: Annotated[bool, typer.Option(help="Follow processing until the video is ready.")] = True,
) -> None:
    """Upload a clip, resume it if the connection drops, and follow its processing."""
    metadata = ingest_pb2.VideoMetadata(
        caption=caption, hashtags=hashtag or [], disclosure_label=label,
        commercial_declaration=disclosure_pb2.CommercialDeclaration(
            relationship="COMMERCIAL_RELATIONSHIP_" + commercial.name.upper(), brand_name=brand),
        ai_declaration=disclosure_pb2.AiDeclaration(usage="AI_USAGE_" + ai.name.upper()),
    )
    bearer = token or mint_token(platform_signing_key(), TokenClaims(
        subject=f"users/{creator}", roles=frozenset({Role.CREATOR}), country="DE"), ttl=dt.timedelta(hours=1))
    asyncio.run(_upload_and_watch(file, f"creators/{creator}", metadata, bearer,
                                  target or config.target("ingest"), watch))


# How long to wait for ingest to accept a connection before saying it cannot be reached.
CONNECT_TIMEOUT_S = 3.0


async def _upload_and_watch(file: Path, parent: str, metadata: ingest_pb2.VideoMetadata, token: str,
                            target: str, watch: bool) -> None:
    call_metadata = [("authorization", f"Bearer {token}")]
    async with Transport.from_environment().user_channel("ingest", target) as channel:
        try:
            await asyncio.wait_for(channel.channel_ready(), CONNECT_TIMEOUT_S)
        except TimeoutError:
            raise typer.Exit(_unreachable(target)) from None
        stub = ingest_pb2_grpc.IngestServiceStub(channel)
        refusal: grpc.aio.AioRpcError | None = None
        with Progress(TextColumn("uploading"), BarColumn(), DownloadColumn(), TransferSpeedColumn()) as progress:
            sending = progress.add_task("uploading", total=file.stat().st_size)
            try:
                response = await upload_file(stub, file, parent=parent, metadata=metadata,
                                             call_metadata=call_metadata,
                                             on_progress=lambda sent: progress.update(sending, completed=sent))
            except grpc.aio.AioRpcError as error:
                refusal = error  # reported once the bar has stopped: on its own line, not redrawn after
        if refusal is not None:
            raise typer.Exit(_report(refusal, target))
        if not watch:
            typer.echo(response.video.name)
            return
        with Progress(TextColumn("{task.description:<12}"), BarColumn(), TaskProgressColumn()) as progress:
            processing = progress.add_task("processing", total=100)
            async for update in stub.WatchVideo(ingest_pb2.WatchVideoRequest(name=response.video.name),
                                                metadata=call_metadata):
                video = update.video
                progress.update(processing, completed=video.progress_percent,
                                description=ingest_pb2.ProcessingStage.Name(video.stage).removeprefix(
                                    "PROCESSING_STAGE_").lower())
    for line in summary_lines(video):
        typer.echo(line)


def summary_lines(video: ingest_pb2.Video) -> list[str]:
    """What the creator learns when processing ends: state, labels, what publication waits
    for or why the video is held (with the findings to act on), and where to play it."""
    state = ingest_pb2.VideoState.Name(video.state).removeprefix("VIDEO_STATE_")
    publication = ingest_pb2.PublicationState.Name(video.publication_state).removeprefix("PUBLICATION_STATE_")
    lines = [f"{video.name}: {state}, {publication}"]
    if video.state != ingest_pb2.VIDEO_STATE_READY:
        return [*lines, f"failed: {video.failure_reason}"]
    if video.labels:
        lines.append(f"labels: {', '.join(video.labels)}")
    if video.publication_note:
        lines.append(video.publication_note)
    if video.publication_state == ingest_pb2.PUBLICATION_STATE_HELD:
        findings = list(video.compliance_review.findings)
        violations = [f for f in findings if f.severity == disclosure_pb2.FINDING_SEVERITY_VIOLATION]
        lines += [f"  {finding.rule_id}: {finding.message}" for finding in violations or findings]
    lines.append(f"play: {video.playback_uri}{video.master_playlist_path}")
    return lines


def _report(error: grpc.aio.AioRpcError, target: str) -> int:
    if error.code() is grpc.StatusCode.UNAVAILABLE and "failed to connect" in (error.details() or ""):
        return _unreachable(target)
    typer.echo(f"upload refused ({error.code().name}): {error.details()}", err=True)
    return 1


def _unreachable(target: str) -> int:
    typer.echo(f"cannot reach ingest at {target}: nothing answers there. Is it running (`limelight up`)? "
               "Pass --target HOST:PORT or set LIMELIGHT_INGEST_TARGET for another address.", err=True)
    return 1


app = typer.Typer(add_completion=False)
app.command()(upload)

if __name__ == "__main__":
    app()
