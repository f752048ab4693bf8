"""Every setting of the ingest service, with its default, in one typed object.

`IngestConfig.from_environment()` is the only place ingest reads the environment:

| variable                          | setting              | default                         |
|-----------------------------------|----------------------|---------------------------------|
| `LIMELIGHT_INGEST_PLAYBACK_PORT`  | `playback_port`      | 0: any free port (loopback)     |
| `LIMELIGHT_INGEST_TRANSCODE_CPUS` | `transcode_cpus`     | unset: one CPU (plus a GPU when |
|                                   |                      | the cluster has one)            |

Where Ray runs is Ray's own setting (`RAY_ADDRESS`, read by the Ray adapter in
`workers.py`); where the data lives is the platform's (`LIMELIGHT_DATA_DIR`).
Limits a creator meets (upload size, clip length, picture size) are the domain's
defaults in `uploads.UploadLimits` and `probe.ProbeLimits`.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.ingest.probe import ProbeLimits
from services.ingest.transcode import TranscodeSettings
from services.ingest.uploads import UploadLimits


@dataclass(frozen=True, kw_only=True)
class IngestConfig:
    upload_limits: UploadLimits = field(default_factory=UploadLimits)
    probe_limits: ProbeLimits = field(default_factory=ProbeLimits)
    transcode: TranscodeSettings = field(default_factory=TranscodeSettings)
    max_jobs_in_flight: int = 8  # transcode jobs this replica has at Ray at once
    # A replica holds each job it runs this long, renewing it as it goes; a job whose replica died
    # is taken over by another within this (plus half of it, how often replicas look).
    job_lease: dt.timedelta = dt.timedelta(seconds=60)
    # A compliance review or ranking registration that could not be done is asked again
    # after this, doubling per attempt up to the cap.
    follow_up_backoff: dt.timedelta = dt.timedelta(seconds=30)
    follow_up_backoff_cap: dt.timedelta = dt.timedelta(hours=1)
    follow_up_sweep: dt.timedelta = dt.timedelta(seconds=30)
    watch_poll: dt.timedelta = dt.timedelta(milliseconds=200)  # how often WatchVideo looks for changes
    playback_port: int = 0
    transcode_cpus: float | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> IngestConfig:
        cpus = environ.get("LIMELIGHT_INGEST_TRANSCODE_CPUS")
        return cls(
            playback_port=int(environ.get("LIMELIGHT_INGEST_PLAYBACK_PORT", "0")),
            transcode_cpus=float(cpus) if cpus else None,
        )
