from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import av
import pytest

from libs.blobstore import LocalBlobStore
from libs.kit.telemetry import configure_telemetry, current_ids, inject_carrier, read_spans
from services.ingest.ladder import plan_ladder
from services.ingest.model import TranscodeFailure, TranscodeRequest
from services.ingest.probe import probe_media
from services.ingest.sample_clips import ClipSpec, expected_frame_count, write_clip
from services.ingest.transcode import TranscodeSettings
from services.ingest.workers import RayTranscoder

pytestmark = pytest.mark.usefixtures("ray_session")


async def ignore_progress(fraction: float) -> None:
    return None


def request_for(store: LocalBlobStore, clip: Path, job_id: str, telemetry_root: Path,
                carrier: dict[str, str] | None = None, probe_from: Path | None = None) -> TranscodeRequest:
    store.put(f"videos/{job_id}/source", clip.read_bytes())
    probe = probe_media(probe_from or clip)
    return TranscodeRequest(
        job_id=job_id, blob_store_url=store.url, source_key=f"videos/{job_id}/source",
        output_prefix=f"videos/{job_id}/hls/{job_id}/", probe=probe,
        renditions=plan_ladder(*probe.display_size), settings=TranscodeSettings(),
        trace_carrier=carrier or {}, telemetry_root=str(telemetry_root),
    )


async def test_ray_task_writes_the_ladder_under_the_job_prefix_and_reports_progress(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    request = request_for(store, clips["portrait"], "job-ok", tmp_path)
    progress: list[float] = []

    async def record(fraction: float) -> None:
        progress.append(fraction)

    result = await RayTranscoder().transcode(request, record)
    media = result.media
    assert media.prefix == "videos/job-ok/hls/job-ok/" and media.master_playlist_path == "master.m3u8"
    assert store.get(media.prefix + media.master_playlist_path).startswith(b"#EXTM3U")
    assert [(r.width, r.height) for r in media.renditions] == [(480, 854), (360, 640)]
    for path in [media.poster_path, *media.thumbnail_paths, *(r.playlist_path for r in media.renditions)]:
        assert store.exists(media.prefix + path)
    assert progress and progress[-1] == 1.0 and progress == sorted(progress)
    assert len(result.workers) == 1


async def test_a_worker_killed_mid_job_is_retried_by_ray_and_the_job_finishes(tmp_path: Path) -> None:
    spec = ClipSpec(480, 854, 6.0)  # long enough that the kill lands mid-job
    clip = write_clip(tmp_path / "long.mp4", spec)
    store = LocalBlobStore(tmp_path / "blobs")
    request = request_for(store, clip, "job-crash", tmp_path)
    transcoder = RayTranscoder()
    job = asyncio.ensure_future(transcoder.transcode(request, ignore_progress))
    while not (workers := await transcoder.workers("job-crash")):
        await asyncio.sleep(0.01)
    os.kill(workers[0].pid, signal.SIGKILL)
    result = await job
    assert len(result.workers) == 2 and result.workers[0].pid != result.workers[1].pid
    local = tmp_path / "check"
    for info in store.list(result.media.prefix):
        (local / info.key).parent.mkdir(parents=True, exist_ok=True)
        (local / info.key).write_bytes(store.get(info.key))
    for rendition in result.media.renditions:
        with av.open(str(local / result.media.prefix / rendition.playlist_path)) as container:
            assert sum(1 for _ in container.decode(video=0)) == expected_frame_count(spec)


async def test_media_that_fails_in_the_worker_ends_the_job_without_retries(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    store = LocalBlobStore(tmp_path / "blobs")
    request = request_for(store, clips["corrupt"], "job-bad", tmp_path, probe_from=clips["portrait"])
    transcoder = RayTranscoder()
    with pytest.raises(TranscodeFailure) as raised:
        await transcoder.transcode(request, ignore_progress)
    assert raised.value.reason == "TRANSCODE_FAILED"
    assert not store.exists(request.output_prefix + "master.m3u8")


async def test_the_worker_spans_join_the_callers_trace(clips: dict[str, Path], tmp_path: Path) -> None:
    telemetry = configure_telemetry("ingest", data_root=tmp_path)
    store = LocalBlobStore(tmp_path / "blobs")
    with telemetry.tracer.start_as_current_span("UploadVideo") as upload_span:
        request = request_for(store, clips["no_audio"], "job-traced", tmp_path, carrier=inject_carrier())
        await RayTranscoder().transcode(request, ignore_progress)
    telemetry.shutdown()
    trace_id = format(upload_span.get_span_context().trace_id, "032x")
    spans = {span["name"]: span for span in read_spans(tmp_path) if span["trace_id"] == trace_id}
    assert {"UploadVideo", "ingest.transcode", "ingest.transcode.encode", "ingest.transcode.store"} <= set(spans)
    assert spans["ingest.transcode"]["parent_span_id"] == format(upload_span.get_span_context().span_id, "016x")
    assert spans["ingest.transcode"]["service"] == "limelight-ingest-worker"
    assert spans["ingest.transcode.encode"]["parent_span_id"] == spans["ingest.transcode"]["span_id"]
    assert current_ids().trace_id == ""  # no span of the job is left current in the caller
