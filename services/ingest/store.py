"""Persistence for ingest: videos, upload sessions and parts, transcode jobs, pending registrations.

The only module that speaks SQL. Every state change that must happen together happens
in one transaction (a job finishing and its video becoming READY; an upload completing
and its job being queued), and the schema refuses what must never be: a committed offset
past the declared size, two unfinished jobs for one video, a state outside the enums.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path
from typing import Any

from libs.storage.sqlite import Migration, SqliteDatabase, open_service_database
from services.ingest.probe import MediaProbe
from services.ingest.uploads import UploadSession, UploadState
from services.ingest.videos import (
    AiContent,
    CommercialDeclaration,
    ComplianceOutcome,
    ComplianceVerdict,
    JobState,
    ProvenanceClaim,
    PublishedMedia,
    RegistrationState,
    RenditionRecord,
    TranscodeJob,
    Video,
    VideoMetadata,
    VideoState,
)

MIGRATIONS = [
    Migration(1, """
CREATE TABLE videos (
    video_id TEXT PRIMARY KEY,
    creator_id TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('UPLOADING', 'PROCESSING', 'READY', 'HELD', 'FAILED')),
    progress REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    metadata_json TEXT NOT NULL,
    probe_json TEXT,
    compliance_json TEXT NOT NULL,
    media_json TEXT,
    failure_reason TEXT NOT NULL DEFAULT '',
    failure_message TEXT NOT NULL DEFAULT '',
    ranking_state TEXT NOT NULL DEFAULT 'NOT_REQUESTED'
        CHECK (ranking_state IN ('NOT_REQUESTED', 'PENDING', 'REGISTERED')),
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX videos_by_creator ON videos (creator_id, created_at DESC, video_id DESC);

CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    video_id TEXT NOT NULL UNIQUE REFERENCES videos (video_id),
    creator_id TEXT NOT NULL,
    declared_size INTEGER NOT NULL CHECK (declared_size > 0),
    sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
    committed_bytes INTEGER NOT NULL DEFAULT 0 CHECK (committed_bytes BETWEEN 0 AND declared_size),
    state TEXT NOT NULL CHECK (state IN ('OPEN', 'COMPLETED', 'FAILED')),
    expires_at TEXT NOT NULL,
    created_at TEXT NOT NULL
);

CREATE TABLE upload_parts (
    upload_id TEXT NOT NULL REFERENCES uploads (upload_id),
    offset INTEGER NOT NULL CHECK (offset >= 0),
    size INTEGER NOT NULL CHECK (size > 0),
    blob_key TEXT NOT NULL,
    PRIMARY KEY (upload_id, offset)
);

CREATE TABLE transcode_jobs (
    job_id TEXT PRIMARY KEY,
    video_id TEXT NOT NULL REFERENCES videos (video_id),
    state TEXT NOT NULL CHECK (state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED')),
    output_prefix TEXT NOT NULL,
    trace_carrier_json TEXT NOT NULL DEFAULT '{}',
    submissions INTEGER NOT NULL DEFAULT 0,
    failure_reason TEXT NOT NULL DEFAULT '',
    failure_message TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE UNIQUE INDEX one_unfinished_job_per_video ON transcode_jobs (video_id)
    WHERE state IN ('QUEUED', 'RUNNING');

CREATE TABLE ranking_registrations (
    video_id TEXT PRIMARY KEY REFERENCES videos (video_id),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    trace_carrier_json TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX ranking_registrations_due ON ranking_registrations (next_attempt_at);
"""),
]


class IngestStore:
    def __init__(self, database: SqliteDatabase) -> None:
        self._db = database

    @classmethod
    def open(cls, data_root: Path | None = None) -> IngestStore:
        return cls(open_service_database("ingest", MIGRATIONS, root=data_root))

    def close(self) -> None:
        self._db.close()

    # -- videos and uploads -------------------------------------------------------------

    def create_upload(self, video: Video, session: UploadSession) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "INSERT INTO videos (video_id, creator_id, state, metadata_json, compliance_json, created_at,"
                " updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (video.video_id, video.creator_id, video.state.value, _dump(video.metadata),
                 _dump(video.compliance), _time(video.created_at), _time(video.updated_at)),
            )
            tx.execute(
                "INSERT INTO uploads (upload_id, video_id, creator_id, declared_size, sha256, state, expires_at,"
                " created_at) VALUES (?, ?, ?, ?, ?, 'OPEN', ?, ?)",
                (session.upload_id, session.video_id, session.creator_id, session.declared_size,
                 session.sha256_hex, _time(session.expires_at), _time(video.created_at)),
            )

    def get_video(self, video_id: str) -> Video | None:
        with self._db.reading() as connection:
            row = connection.execute("SELECT * FROM videos WHERE video_id = ?", (video_id,)).fetchone()
        return _video(row) if row else None

    def video_version(self, video_id: str) -> int | None:
        """Cheap change check for watchers polling a video."""
        with self._db.reading() as connection:
            row = connection.execute("SELECT version FROM videos WHERE video_id = ?", (video_id,)).fetchone()
        return int(row[0]) if row else None

    def list_videos(self, creator_id: str, limit: int, after: tuple[dt.datetime, str] | None = None) -> list[Video]:
        """A creator's videos, newest first; `after` is the (created_at, video_id) of the last one seen."""
        with self._db.reading() as connection:
            if after is None:
                rows = connection.execute(
                    "SELECT * FROM videos WHERE creator_id = ? ORDER BY created_at DESC, video_id DESC LIMIT ?",
                    (creator_id, limit),
                ).fetchall()
            else:
                rows = connection.execute(
                    "SELECT * FROM videos WHERE creator_id = ? AND (created_at, video_id) < (?, ?)"
                    " ORDER BY created_at DESC, video_id DESC LIMIT ?",
                    (creator_id, _time(after[0]), after[1], limit),
                ).fetchall()
        return [_video(row) for row in rows]

    def get_upload(self, upload_id: str) -> UploadSession | None:
        with self._db.reading() as connection:
            row = connection.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
        return _upload(row) if row else None

    def commit_part(self, upload_id: str, offset: int, size: int, blob_key: str) -> UploadSession:
        """Record a stored part and advance the committed offset, only from exactly `offset`.

        Two replicas racing on one upload cannot both commit the same range: the second
        update finds the offset moved and fails.
        """
        with self._db.transaction() as tx:
            moved = tx.execute(
                "UPDATE uploads SET committed_bytes = committed_bytes + ? WHERE upload_id = ?"
                " AND committed_bytes = ? AND state = 'OPEN'",
                (size, upload_id, offset),
            ).rowcount
            if moved != 1:
                raise ConcurrentUploadError(upload_id, offset)
            tx.execute("INSERT INTO upload_parts (upload_id, offset, size, blob_key) VALUES (?, ?, ?, ?)",
                       (upload_id, offset, size, blob_key))
            row = tx.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
        return _upload(row)

    def upload_parts(self, upload_id: str) -> list[tuple[int, int, str]]:
        """(offset, size, blob key) of every committed part, in order."""
        with self._db.reading() as connection:
            rows = connection.execute(
                "SELECT offset, size, blob_key FROM upload_parts WHERE upload_id = ? ORDER BY offset", (upload_id,)
            ).fetchall()
        return [(int(r["offset"]), int(r["size"]), str(r["blob_key"])) for r in rows]

    def forget_parts(self, upload_id: str) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM upload_parts WHERE upload_id = ?", (upload_id,))

    def start_processing(self, upload_id: str, probe: MediaProbe, compliance: ComplianceOutcome,
                         job: TranscodeJob, now: dt.datetime) -> None:
        """Upload verified and probed: the video starts PROCESSING and its job is queued, together."""
        with self._db.transaction() as tx:
            moved = tx.execute(
                "UPDATE uploads SET state = 'COMPLETED' WHERE upload_id = ? AND state = 'OPEN'", (upload_id,)
            ).rowcount
            if moved != 1:
                raise ConcurrentUploadError(upload_id, -1)
            tx.execute(
                "UPDATE videos SET state = 'PROCESSING', probe_json = ?, compliance_json = ?, progress = 0,"
                " version = version + 1, updated_at = ? WHERE video_id = ? AND state = 'UPLOADING'",
                (_dump(probe), _dump(compliance), _time(now), job.video_id),
            )
            tx.execute(
                "INSERT INTO transcode_jobs (job_id, video_id, state, output_prefix, trace_carrier_json,"
                " created_at, updated_at) VALUES (?, ?, 'QUEUED', ?, ?, ?, ?)",
                (job.job_id, job.video_id, job.output_prefix, json.dumps(job.trace_carrier), _time(now), _time(now)),
            )

    def reject_upload(self, upload_id: str, reason: str, message: str, now: dt.datetime) -> None:
        """The upload can never become a video (bad checksum, unusable media)."""
        with self._db.transaction() as tx:
            row = tx.execute("SELECT video_id FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
            tx.execute("UPDATE uploads SET state = 'FAILED' WHERE upload_id = ?", (upload_id,))
            self._fail_video(tx, str(row["video_id"]), reason, message, now)

    # -- transcode jobs ---------------------------------------------------------------

    def get_job(self, job_id: str) -> TranscodeJob | None:
        with self._db.reading() as connection:
            row = connection.execute("SELECT * FROM transcode_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _job(row) if row else None

    def unfinished_jobs(self) -> list[TranscodeJob]:
        """Jobs a stopped service left QUEUED or RUNNING, oldest first."""
        with self._db.reading() as connection:
            rows = connection.execute(
                "SELECT * FROM transcode_jobs WHERE state IN ('QUEUED', 'RUNNING') ORDER BY created_at"
            ).fetchall()
        return [_job(row) for row in rows]

    def mark_job_submitted(self, job_id: str, now: dt.datetime) -> TranscodeJob:
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE transcode_jobs SET state = 'RUNNING', submissions = submissions + 1, updated_at = ?"
                " WHERE job_id = ? AND state IN ('QUEUED', 'RUNNING')",
                (_time(now), job_id),
            )
            row = tx.execute("SELECT * FROM transcode_jobs WHERE job_id = ?", (job_id,)).fetchone()
        return _job(row)

    def record_progress(self, video_id: str, progress: float, now: dt.datetime) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE videos SET progress = ?, version = version + 1, updated_at = ?"
                " WHERE video_id = ? AND state = 'PROCESSING' AND progress < ?",
                (progress, _time(now), video_id, progress),
            )

    def complete_job(self, job_id: str, media: PublishedMedia, final_state: VideoState,
                     now: dt.datetime) -> None:
        """Commit a finished job: its prefix becomes the video's media, and ranking is owed a registration."""
        with self._db.transaction() as tx:
            job = tx.execute("SELECT * FROM transcode_jobs WHERE job_id = ?", (job_id,)).fetchone()
            moved = tx.execute(
                "UPDATE transcode_jobs SET state = 'SUCCEEDED', updated_at = ? WHERE job_id = ?"
                " AND state IN ('QUEUED', 'RUNNING')",
                (_time(now), job_id),
            ).rowcount
            if moved != 1:
                return  # already committed by an earlier attempt: one effect per job
            publish = final_state is VideoState.READY
            tx.execute(
                "UPDATE videos SET state = ?, media_json = ?, progress = 1, ranking_state = ?,"
                " version = version + 1, updated_at = ? WHERE video_id = ?",
                (final_state.value, _dump(media),
                 RegistrationState.PENDING.value if publish else RegistrationState.NOT_REQUESTED.value,
                 _time(now), job["video_id"]),
            )
            if publish:
                tx.execute(
                    "INSERT INTO ranking_registrations (video_id, next_attempt_at, trace_carrier_json)"
                    " VALUES (?, ?, ?)",
                    (job["video_id"], _time(now), job["trace_carrier_json"]),
                )

    def fail_job(self, job_id: str, reason: str, message: str, now: dt.datetime) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE transcode_jobs SET state = 'FAILED', failure_reason = ?, failure_message = ?,"
                " updated_at = ? WHERE job_id = ?",
                (reason, message, _time(now), job_id),
            )
            row = tx.execute("SELECT video_id FROM transcode_jobs WHERE job_id = ?", (job_id,)).fetchone()
            self._fail_video(tx, str(row["video_id"]), reason, message, now)

    @staticmethod
    def _fail_video(tx: Any, video_id: str, reason: str, message: str, now: dt.datetime) -> None:
        tx.execute(
            "UPDATE videos SET state = 'FAILED', failure_reason = ?, failure_message = ?, version = version + 1,"
            " updated_at = ? WHERE video_id = ?",
            (reason, message, _time(now), video_id),
        )

    # -- registrations with ranking ---------------------------------------------------

    def due_registrations(self, now: dt.datetime, limit: int = 50) -> list[tuple[str, int, dict[str, str]]]:
        """(video_id, attempts so far, trace carrier) of registrations due by `now`."""
        with self._db.reading() as connection:
            rows = connection.execute(
                "SELECT video_id, attempts, trace_carrier_json FROM ranking_registrations"
                " WHERE next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                (_time(now), limit),
            ).fetchall()
        return [(str(r["video_id"]), int(r["attempts"]), json.loads(r["trace_carrier_json"])) for r in rows]

    def registration_succeeded(self, video_id: str, now: dt.datetime) -> None:
        with self._db.transaction() as tx:
            tx.execute("DELETE FROM ranking_registrations WHERE video_id = ?", (video_id,))
            tx.execute(
                "UPDATE videos SET ranking_state = 'REGISTERED', version = version + 1, updated_at = ?"
                " WHERE video_id = ?",
                (_time(now), video_id),
            )

    def registration_deferred(self, video_id: str, retry_at: dt.datetime, error: str) -> None:
        with self._db.transaction() as tx:
            tx.execute(
                "UPDATE ranking_registrations SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
                " WHERE video_id = ?",
                (_time(retry_at), error[:500], video_id),
            )


class ConcurrentUploadError(RuntimeError):
    """Another writer moved the upload first; the caller re-reads the session and reports it."""

    def __init__(self, upload_id: str, offset: int) -> None:
        super().__init__(f"upload {upload_id} was not at offset {offset} / not open")


# -- row mapping ------------------------------------------------------------------------


def _time(moment: dt.datetime) -> str:
    """Fixed-width UTC ISO text, so string order is time order in SQL comparisons."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_time(text: str) -> dt.datetime:
    return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=dt.UTC)


def _dump(value: object) -> str:
    return json.dumps(dataclasses.asdict(value), separators=(",", ":"))  # type: ignore[call-overload]


def _video(row: Any) -> Video:
    metadata = json.loads(row["metadata_json"])
    compliance = json.loads(row["compliance_json"])
    return Video(
        video_id=row["video_id"],
        creator_id=row["creator_id"],
        metadata=VideoMetadata(
            caption=metadata["caption"],
            hashtags=tuple(metadata["hashtags"]),
            commercial=CommercialDeclaration(**metadata["commercial"]),
            ai_content=AiContent(metadata["ai_content"]),
            product_tags=tuple(metadata["product_tags"]),
        ),
        state=VideoState(row["state"]),
        created_at=_parse_time(row["created_at"]),
        updated_at=_parse_time(row["updated_at"]),
        progress=float(row["progress"]),
        failure_reason=row["failure_reason"],
        failure_message=row["failure_message"],
        probe=MediaProbe(**json.loads(row["probe_json"])) if row["probe_json"] else None,
        compliance=ComplianceOutcome(
            verdict=ComplianceVerdict(compliance["verdict"]),
            labels=tuple(compliance["labels"]),
            findings=tuple(compliance["findings"]),
            provenance=_provenance(compliance["provenance"]),
        ),
        media=_media(json.loads(row["media_json"])) if row["media_json"] else None,
        ranking=RegistrationState(row["ranking_state"]),
        version=int(row["version"]),
    )


def _provenance(fields: dict[str, Any]) -> ProvenanceClaim:
    return ProvenanceClaim(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


def _media(fields: dict[str, Any]) -> PublishedMedia:
    return PublishedMedia(
        master_playlist_key=fields["master_playlist_key"],
        poster_key=fields["poster_key"],
        thumbnail_keys=tuple(fields["thumbnail_keys"]),
        renditions=tuple(RenditionRecord(**r) for r in fields["renditions"]),
        video_encoder=fields["video_encoder"],
    )


def _upload(row: Any) -> UploadSession:
    return UploadSession(
        upload_id=row["upload_id"],
        video_id=row["video_id"],
        creator_id=row["creator_id"],
        declared_size=int(row["declared_size"]),
        sha256_hex=row["sha256"],
        committed_bytes=int(row["committed_bytes"]),
        state=UploadState(row["state"]),
        expires_at=_parse_time(row["expires_at"]),
    )


def _job(row: Any) -> TranscodeJob:
    return TranscodeJob(
        job_id=row["job_id"],
        video_id=row["video_id"],
        state=JobState(row["state"]),
        output_prefix=row["output_prefix"],
        trace_carrier=json.loads(row["trace_carrier_json"]),
        submissions=int(row["submissions"]),
        failure_reason=row["failure_reason"],
        failure_message=row["failure_message"],
    )

