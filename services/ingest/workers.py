"""The Ray adapter of the `Transcoder` port: resources, retries, idempotent output, progress, traces.

- Local Ray by default (`connect_ray`: no dashboard, every core of the machine);
  `RAY_ADDRESS` joins an existing cluster instead, shipping this repository as the
  job's working directory.
- `transcode_task` declares what it needs: one CPU, plus one GPU when the cluster has
  GPUs (`transcode_resources`); callers may override either with `.options()`.
- A worker that dies mid-job (OOM killer, node loss, `kill -9`) is a system failure:
  Ray runs the task again, up to `TRANSCODE_MAX_RETRIES` times. Errors in the media are
  application failures and are not retried: they can never succeed.
- Idempotent output: an attempt first clears the job's own prefix, writes every
  segment and playlist there, and the master playlist last. The service commits the
  job (store transaction) only after the task returned, so readers never see a prefix
  that is still being written, and a retry simply rewrites the same prefix.
- Progress and the identity of each worker that picked the job up go to a small
  `ProgressBoard` actor that the service polls.
- Tracing: the task receives the caller's W3C trace context as a plain dict, and
  `_task_span` continues the trace in the worker through the kit's telemetry, so an
  upload's trace contains the Ray task's spans.
- Connecting: `connect_ray` is the one function that knows how this process joins Ray.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol, cast

import ray

from libs import ray_cluster
from libs.blobstore import BlobStore, open_blob_store
from libs.kit.telemetry import Telemetry, configure_telemetry, extract_carrier
from services.ingest.model import (
    PublishedMedia,
    RenditionRecord,
    TranscodeFailure,
    TranscodeRequest,
    TranscodeResult,
    WorkerIdentity,
)
from services.ingest.transcode import Accelerator, HlsOutput, transcode_to_hls
from services.ingest.usecases.ports import ProgressListener

logger = logging.getLogger(__name__)

TRANSCODE_MAX_RETRIES = 3
PROGRESS_POLL_S = 0.25
_COPY_CHUNK = 1 << 20


def connect_ray(*, num_cpus: int | None = None) -> bool:
    """Join `RAY_ADDRESS` if set, else start a local Ray sized to this machine.

    Returns False when this process was already connected (someone else owns the
    connection and will shut it down), True when this call connected.
    """
    return ray_cluster.connect(num_cpus=num_cpus)


def transcode_resources() -> dict[str, float]:
    """One CPU, and a GPU when the cluster has any (NVDEC/NVENC do the heavy lifting then)."""
    resources: dict[str, float] = ray.cluster_resources()  # type: ignore[no-untyped-call]
    if resources.get("GPU", 0) >= 1:
        return {"num_cpus": 1, "num_gpus": 1}
    return {"num_cpus": 1}


class ProgressBoard:
    """Latest progress and the workers of each running job (progress only ever rises)."""

    def __init__(self) -> None:
        self._progress: dict[str, float] = {}
        self._workers: dict[str, list[WorkerIdentity]] = {}

    def started(self, job_id: str, worker: WorkerIdentity) -> None:
        self._workers.setdefault(job_id, []).append(worker)

    def report(self, job_id: str, fraction: float) -> None:
        self._progress[job_id] = max(fraction, self._progress.get(job_id, 0.0))

    def status(self, job_id: str) -> tuple[float, list[WorkerIdentity]]:
        return self._progress.get(job_id, 0.0), list(self._workers.get(job_id, []))

    def forget(self, job_id: str) -> None:
        self._progress.pop(job_id, None)
        self._workers.pop(job_id, None)


_progress_board_actor = ray.remote(ProgressBoard)
BoardHandle = ray.actor.ActorHandle[ProgressBoard]


@ray.remote(num_cpus=1, max_retries=TRANSCODE_MAX_RETRIES, retry_exceptions=False)
def transcode_task(request: TranscodeRequest, board: BoardHandle) -> PublishedMedia:
    """Transcode `request.source_key` into `request.output_prefix` (see the module docstring)."""
    board.started.remote(request.job_id, WorkerIdentity(socket.gethostname(), os.getpid()))
    accelerator = Accelerator.CUDA if ray.get_gpu_ids() else Accelerator.CPU
    settings = dataclasses.replace(request.settings, accelerator=accelerator)
    with _task_span("ingest.transcode", request, {"ingest.job_id": request.job_id,
                                                  "ingest.accelerator": accelerator.value},
                    continues_caller=True) as span:
        store = open_blob_store(request.blob_store_url)
        for stale in list(store.list(request.output_prefix)):
            store.delete(stale.key)  # what an earlier, killed attempt left behind
        with tempfile.TemporaryDirectory(prefix=f"transcode-{request.job_id}-") as scratch:
            # A local copy first, as from any object store: FFmpeg then reads the file itself
            # instead of calling back into Python (and the GIL) for every block.
            source = Path(scratch) / "source"
            with store.open_read(request.source_key) as remote, open(source, "wb") as local:
                shutil.copyfileobj(remote, local, _COPY_CHUNK)
            with _task_span("ingest.transcode.encode", request, {}):
                output = transcode_to_hls(
                    source, Path(scratch) / "hls", request.probe, request.renditions, settings,
                    on_progress=lambda fraction: board.report.remote(request.job_id, fraction),
                )
            span.set_attribute("ingest.video_encoder", output.video_encoder)
            with _task_span("ingest.transcode.store", request, {"ingest.files": len(output.files())}):
                _store_output(store, Path(scratch) / "hls", request.output_prefix, output)
        return _published(request.output_prefix, output)


class RayTranscoder:
    """The service's side: submit a job, follow its progress, translate how it ended.

    Connects to Ray on the first job, off the event loop (`ray.init` takes seconds), so a
    service that never transcodes never starts Ray; `close` shuts down a Ray it started.
    """

    def __init__(self, *, task_options: dict[str, object] | None = None) -> None:
        self._task_options = task_options  # overrides of `transcode_resources()`, e.g. {"num_cpus": 2}
        self._board: BoardHandle | None = None
        self._connecting = asyncio.Lock()
        self._started_ray = False

    async def transcode(self, request: TranscodeRequest, on_progress: ProgressListener) -> TranscodeResult:
        board = await self._progress_board()
        options = {**transcode_resources(), **(self._task_options or {})}
        reference = transcode_task.options(**options).remote(request, board)
        finished = asyncio.wrap_future(reference.future())
        reported = 0.0
        try:
            while True:
                done, _ = await asyncio.wait({finished}, timeout=PROGRESS_POLL_S)
                progress, workers = await board.status.remote(request.job_id)
                if progress > reported:
                    reported = progress
                    await on_progress(progress)
                if done:
                    return TranscodeResult(media=_outcome(finished, request.job_id), workers=tuple(workers))
        except asyncio.CancelledError:
            # The service is stopping: the job stays RUNNING in the store and is queued again at
            # the next start, so this attempt must not keep writing into the same prefix.
            ray.cancel(reference, force=True)
            raise
        finally:
            board.forget.remote(request.job_id)

    async def _progress_board(self) -> BoardHandle:
        async with self._connecting:
            if self._board is None:
                self._started_ray = await asyncio.to_thread(connect_ray)
                # An actor of no CPU: bookkeeping only. (Ray's stubs type `.options` loosely.)
                self._board = cast(BoardHandle, _progress_board_actor.options(num_cpus=0).remote())
            return self._board

    def close(self) -> None:
        if self._started_ray:
            ray.shutdown()
            self._started_ray = False
        self._board = None

    async def workers(self, job_id: str) -> list[WorkerIdentity]:
        """The workers that have picked `job_id` up so far (operations, and the crash test)."""
        _, workers = await (await self._progress_board()).status.remote(job_id)
        return workers


def _outcome(finished: asyncio.Future[PublishedMedia], job_id: str) -> PublishedMedia:
    try:
        return finished.result()
    except ray.exceptions.WorkerCrashedError as error:
        raise TranscodeFailure(
            "TRANSCODE_WORKER_CRASHED",
            f"the transcode worker died {TRANSCODE_MAX_RETRIES + 1} times; the clip may be too demanding",
        ) from error
    except ray.exceptions.RayTaskError as error:
        cause = error.cause
        reason = getattr(cause, "reason", "TRANSCODE_FAILED")
        logger.warning("transcode job %s failed: %r", job_id, cause)
        raise TranscodeFailure(reason, getattr(cause, "message", str(cause))) from error


def _store_output(store: BlobStore, scratch: Path, prefix: str, output: HlsOutput) -> None:
    for relative in output.files():  # master playlist last: its presence means the rest is there
        with open(scratch / relative, "rb") as file:
            store.put_stream(prefix + relative, iter(functools.partial(file.read, _COPY_CHUNK), b""))


def _published(prefix: str, output: HlsOutput) -> PublishedMedia:
    return PublishedMedia(
        prefix=prefix,
        master_playlist_path=output.master_playlist,
        poster_path=output.poster,
        thumbnail_paths=output.thumbnails,
        renditions=tuple(
            RenditionRecord(width=r.rendition.width, height=r.rendition.height,
                            video_bitrate=r.rendition.video_bitrate, peak_bandwidth=r.peak_bandwidth,
                            codecs=r.codecs, playlist_path=r.playlist, segment_count=len(r.segments))
            for r in output.renditions
        ),
        video_encoder=output.video_encoder,
    )


_worker_telemetry: dict[str, Telemetry] = {}


class _AttributedSpan(Protocol):
    def set_attribute(self, key: str, value: str) -> None: ...


@contextlib.contextmanager
def _task_span(name: str, request: TranscodeRequest, attributes: dict[str, str | int],
               *, continues_caller: bool = False) -> Iterator[_AttributedSpan]:
    """A span in the worker: the task's outermost one continues the trace the request
    carries, the others nest in it. Flushed on exit, so a killed worker loses at most the
    span it was in."""
    telemetry = _worker_telemetry.get(request.telemetry_root)
    if telemetry is None:
        telemetry = configure_telemetry("ingest-worker", data_root=Path(request.telemetry_root))
        _worker_telemetry[request.telemetry_root] = telemetry
    parent = extract_carrier(request.trace_carrier) if continues_caller else None
    with telemetry.tracer.start_as_current_span(name, context=parent, attributes=attributes) as span:
        yield span
    telemetry.provider.force_flush()
