"""What the service hands a transcoder, what it gets back, and the port it talks to.

Kept free of Ray so the use cases depend on `Transcoder`, not on how jobs are run.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from services.ingest.ladder import Rendition
from services.ingest.probe import MediaProbe
from services.ingest.transcode import TranscodeSettings
from services.ingest.videos import PublishedMedia


@dataclass(frozen=True)
class WorkerIdentity:
    node: str
    pid: int


@dataclass(frozen=True)
class TranscodeRequest:
    job_id: str
    blob_store_url: str
    source_key: str
    output_prefix: str
    probe: MediaProbe
    renditions: tuple[Rendition, ...]
    settings: TranscodeSettings
    trace_carrier: dict[str, str]  # W3C trace context of the upload, continued in the worker
    telemetry_root: str  # data directory whose traces/ folder receives the worker's spans


@dataclass(frozen=True)
class TranscodeResult:
    media: PublishedMedia
    workers: tuple[WorkerIdentity, ...]  # every worker that started the job, in order


class Transcoder(Protocol):
    async def transcode(self, request: TranscodeRequest,
                        on_progress: Callable[[float], None]) -> TranscodeResult:
        """Run the job to the end; raise `TranscodeFailure` when it can never succeed."""
        ...
