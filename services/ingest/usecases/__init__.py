"""The ingest use cases, over the ports they declare (`ports.py`).

    Uploads          begin, resume and read an upload session; write its bytes (UploadWriter)
    CompleteUpload   all bytes are in: verify, probe, read C2PA, ask compliance, queue the transcode
    TranscodeJobs    run queued jobs on the transcoder; a finished job makes its video READY
    FollowUps        ask compliance again for missing verdicts; register published videos with ranking,
                     and published commercial content in compliance's ad repository
    Videos           read, list and watch videos

Each takes only the ports it needs (`IngestStore`, `MediaBlobs`, `Transcoder`,
`ComplianceChecker`, `RankingRegistrar`, `AdRepository`, `ProvenanceReader`, `Tracing`, `Pseudonyms`), so
the same core runs behind gRPC and in integration tests with real SQLite, a real blob store
and real Ray; `server.py` wires the real adapters.

Audit events are written by the store in the same transaction as the change they record
(an upload completing or being rejected, a verdict arriving, a video being published or held), so an event is
stored exactly when its change is; the shared shipper takes them to compliance from there.

    uploading.py     Uploads, UploadWriter, CompleteUpload
    processing.py    TranscodeJobs, FollowUps (background work)
    reading.py       Videos
    audit_events.py  the events the store writes with each change
"""

from __future__ import annotations

from dataclasses import dataclass

from services.ingest.usecases.processing import FollowUps, TranscodeJobs
from services.ingest.usecases.reading import Videos
from services.ingest.usecases.uploading import CompleteUpload, Uploads


@dataclass(frozen=True)
class Ingest:
    """Ingest's use cases, wired once (`server.assemble`), with their background work."""

    uploads: Uploads
    complete_upload: CompleteUpload
    videos: Videos
    jobs: TranscodeJobs
    follow_ups: FollowUps

    async def start(self) -> None:
        self.jobs.start()
        self.follow_ups.start()

    async def stop(self) -> None:
        await self.jobs.stop()
        await self.follow_ups.stop()
