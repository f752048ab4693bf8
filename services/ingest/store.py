"""Persistence for ingest: videos, upload sessions and parts, transcode jobs, follow-ups, audit outbox.

The only module that speaks SQL. Every state change that must happen together happens
in one transaction (a job finishing and its video becoming READY and the audit event of
its publication; an upload completing, its job being queued and its audit event), and the
schema refuses what must never be: a committed offset past the declared size, two
unfinished jobs for one video, a state outside the enums.

Writes never run on the event loop: each is a unit of work for the store's committer,
which owns the write connection on its own thread and makes every unit queued meanwhile
durable with one COMMIT (`libs.storage.committer`); callers await the committed result.
Reads use the database's reader (SQLite: a second connection, so readers never wait for the
writer's fsync; PostgreSQL: the same pool). On PostgreSQL several replicas share the store;
services/ingest/README.md says what they share through it and how.

The audit outbox (`libs.audit.outbox`) holds events written with the change they record;
the shared shipper drains it through `audit_outbox`.

Personal data (the caption and the file name the creator chose) is stored only sealed under
the creator's data key (`libs.privacy`, columns `*_sealed`), sealed before a write is queued
and opened after a read, on the event loop where the key service is reachable; erasing the
creator destroys the key, and those fields read back empty. Rows written before schema 5 keep
their plaintext in `metadata_json` / `filename` (see docs/privacy.md).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from libs.audit.events import AuditEvent
from libs.audit.outbox import DatabaseAuditOutbox, TracedEvent, outbox_migration, write_event
from libs.privacy.fields import PersonalData
from libs.storage.committer import GroupCommitter
from libs.storage.database import Migration, Transaction, open_database, postgres_types
from libs.timestamps import epoch_us, from_epoch_us
from services.ingest.model import (
    AiDeclaration,
    AiLabel,
    AiUsage,
    C2paEvidence,
    C2paValidation,
    CommercialDeclaration,
    CommercialRelationship,
    ComplianceReview,
    DisclosureVerdict,
    DueFollowUp,
    Finding,
    FollowUp,
    JobState,
    ProcessingStage,
    PublishedMedia,
    RankingRegistration,
    RenditionRecord,
    TranscodeJob,
    Video,
    VideoMetadata,
    VideoState,
    source_key,
    stage_for_progress,
)
from services.ingest.probe import MediaProbe
from services.ingest.uploads import UploadSession, UploadState
from services.ingest.usecases.ports import ConcurrentUploadError, PublicationAudit

_SCHEMA_V1 = """
CREATE TABLE uploads (
    upload_id TEXT PRIMARY KEY,
    creator_id TEXT NOT NULL,
    metadata_json TEXT NOT NULL,
    declared_size INTEGER NOT NULL CHECK (declared_size > 0),
    sha256 TEXT NOT NULL CHECK (length(sha256) = 64),
    committed_bytes INTEGER NOT NULL DEFAULT 0 CHECK (committed_bytes BETWEEN 0 AND declared_size),
    state TEXT NOT NULL CHECK (state IN ('RECEIVING', 'COMPLETED', 'FAILED')),
    filename TEXT NOT NULL DEFAULT '',
    failure_reason TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE upload_parts (
    upload_id TEXT NOT NULL REFERENCES uploads (upload_id),
    offset INTEGER NOT NULL CHECK (offset >= 0),
    size INTEGER NOT NULL CHECK (size > 0),
    blob_key TEXT NOT NULL,
    PRIMARY KEY (upload_id, offset)
);

CREATE TABLE videos (
    video_id TEXT PRIMARY KEY REFERENCES uploads (upload_id),
    creator_id TEXT NOT NULL,
    metadata_json TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('PROCESSING', 'READY', 'FAILED')),
    stage TEXT NOT NULL CHECK (stage IN ('QUEUED', 'TRANSCODING', 'PACKAGING', 'DONE')),
    progress REAL NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    probe_json TEXT NOT NULL,
    review_json TEXT NOT NULL,
    c2pa_json TEXT NOT NULL,
    publication TEXT NOT NULL CHECK (publication IN ('PENDING_REVIEW', 'PUBLISHED', 'HELD')),
    media_json TEXT,
    failure_reason TEXT NOT NULL DEFAULT '',
    failure_message TEXT NOT NULL DEFAULT '',
    ranking_state TEXT NOT NULL DEFAULT 'PENDING'
        CHECK (ranking_state IN ('PENDING', 'REGISTERED', 'NOT_APPLICABLE')),
    published_at TEXT,
    version INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    -- Only a finished, cleared video may be visible.
    CHECK (published_at IS NULL OR (state = 'READY' AND publication = 'PUBLISHED'))
);
CREATE INDEX videos_by_creator ON videos (creator_id, created_at DESC, video_id DESC);

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

-- Calls to other services that must eventually succeed (an outbox): asked again with backoff.
CREATE TABLE follow_ups (
    video_id TEXT NOT NULL REFERENCES videos (video_id),
    kind TEXT NOT NULL CHECK (kind IN ('COMPLIANCE_REVIEW', 'RANKING_REGISTRATION')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    trace_carrier_json TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (video_id, kind)
);
CREATE INDEX follow_ups_due ON follow_ups (kind, next_attempt_at);
"""

# Every time column, in the order of its table's columns; from v3 on they hold epoch
# microseconds (INTEGER, `libs.timestamps`), before that fixed-width UTC ISO text.
_TIME_COLUMNS = {
    "uploads": ("created_at", "expires_at"),
    "upload_parts": (),
    "videos": ("published_at", "created_at", "updated_at"),
    "transcode_jobs": ("created_at", "updated_at"),
    "follow_ups": ("next_attempt_at",),
}


def _integer_times_migration(version: int) -> Migration:
    """The v1 tables again, with times as epoch microseconds.

    SQLite cannot change a column's type, so every table is rebuilt: the old ones are
    renamed aside (their foreign keys follow them), the new ones created and filled, parents
    first, converting each text time exactly, then the old ones dropped, children first.
    """
    schema = _SCHEMA_V1
    for columns in _TIME_COLUMNS.values():
        for column in columns:
            schema = schema.replace(f"    {column} TEXT", f"    {column} INTEGER")
    statements = [f"ALTER TABLE {table} RENAME TO {table}_v2;" for table in _TIME_COLUMNS]
    statements += ["DROP INDEX videos_by_creator;", "DROP INDEX one_unfinished_job_per_video;",
                   "DROP INDEX follow_ups_due;", schema]
    for table, times in _TIME_COLUMNS.items():
        statements.append(f"INSERT INTO {table} SELECT * FROM {table}_v2;")
        # 'YYYY-MM-DDTHH:MM:SS.ffffffZ': whole seconds from SQLite, microseconds from the text.
        statements += [f"UPDATE {table} SET {column} = CAST(strftime('%s', {column}) AS INTEGER) * 1000000"
                       f" + CAST(substr({column}, 21, 6) AS INTEGER) WHERE {column} IS NOT NULL;"
                       for column in times]
    statements += [f"DROP TABLE {table}_v2;" for table in reversed(_TIME_COLUMNS)]
    return Migration(version, "\n".join(statements), postgres=_integer_times_postgres())


def _postgres_types(sqlite_schema: str) -> str:
    """`libs.storage`'s types, and `offset` quoted: a reserved word on PostgreSQL."""
    return re.sub(r"\boffset\b", '"offset"', postgres_types(sqlite_schema))


def _integer_times_postgres() -> str:
    """PostgreSQL changes a column's type in place, converting each text time exactly as SQLite's step does."""
    statements = []
    for table, times in _TIME_COLUMNS.items():
        if times:
            statements.append(f"ALTER TABLE {table} " + ", ".join(
                f"ALTER COLUMN {column} TYPE BIGINT USING extract(epoch FROM (substr({column}, 1, 19) || 'Z')"
                f"::timestamptz)::BIGINT * 1000000 + substr({column}, 21, 6)::BIGINT" for column in times) + ";")
    return "\n".join(statements)


# Published commercial content is owed an entry in the DSA ad repository (a third kind of
# follow-up), and the video keeps the entry's name. SQLite cannot change a CHECK, so
# follow_ups is rebuilt.
_AD_REGISTRATION_MIGRATION = """
ALTER TABLE videos ADD COLUMN ad_name TEXT NOT NULL DEFAULT '';
ALTER TABLE follow_ups RENAME TO follow_ups_v3;
DROP INDEX follow_ups_due;
CREATE TABLE follow_ups (
    video_id TEXT NOT NULL REFERENCES videos (video_id),
    kind TEXT NOT NULL CHECK (kind IN ('COMPLIANCE_REVIEW', 'RANKING_REGISTRATION', 'AD_REGISTRATION')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    trace_carrier_json TEXT NOT NULL DEFAULT '{}',
    PRIMARY KEY (video_id, kind)
);
CREATE INDEX follow_ups_due ON follow_ups (kind, next_attempt_at);
INSERT INTO follow_ups SELECT * FROM follow_ups_v3;
DROP TABLE follow_ups_v3;
"""

MIGRATIONS = [
    Migration(1, _SCHEMA_V1, postgres=_postgres_types(_SCHEMA_V1)),
    # Audit events written in the same transaction as the change they record (libs.audit.outbox).
    outbox_migration(2),
    _integer_times_migration(3),
    Migration(4, _AD_REGISTRATION_MIGRATION, postgres="""
ALTER TABLE videos ADD COLUMN ad_name TEXT NOT NULL DEFAULT '';
ALTER TABLE follow_ups DROP CONSTRAINT follow_ups_kind_check, ADD CONSTRAINT follow_ups_kind_check
    CHECK (kind IN ('COMPLIANCE_REVIEW', 'RANKING_REGISTRATION', 'AD_REGISTRATION'));
"""),
    # Personal fields, sealed under the creator's data key (libs.privacy).
    Migration.portable(5, """
ALTER TABLE uploads ADD COLUMN caption_sealed BLOB;
ALTER TABLE uploads ADD COLUMN filename_sealed BLOB;
ALTER TABLE videos ADD COLUMN caption_sealed BLOB;
"""),
    # Replicas share the jobs: one runs a job while its lease lasts and renews it; a job whose
    # lease ran out (its replica stopped or died) is taken over by another.
    Migration.portable(6, """
ALTER TABLE transcode_jobs ADD COLUMN lease_holder TEXT NOT NULL DEFAULT '';
ALTER TABLE transcode_jobs ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;
"""),
]

CAPTION = "ingest.caption"
FILENAME = "ingest.filename"

T = TypeVar("T")



class IngestStore:
    def __init__(self, data_root: Path | None, personal: PersonalData) -> None:
        self._personal = personal
        writer = open_database("ingest", MIGRATIONS, root=data_root)
        self._writer = writer
        self._reader = writer.open_reader()
        self._committer = GroupCommitter(writer, name="ingest-store")
        self.audit_outbox = DatabaseAuditOutbox(self._reader, committer=self._committer)

    def add_commit_listener(self, listener: Callable[[], None]) -> None:
        """Call `listener()` (quick, thread-safe) after every commit: the audit shipper's wake-up."""
        self._committer.add_commit_listener(listener)

    @classmethod
    def open(cls, data_root: Path | None = None, *, personal: PersonalData) -> IngestStore:
        """SQLite: `<data_root>/ingest/ingest.db`; PostgreSQL (`LIMELIGHT_DATABASE_URL`): the schema `ingest`."""
        return cls(data_root, personal)

    def close(self) -> None:
        self._committer.close()
        self._writer.close()
        if self._reader is not self._writer:
            self._reader.close()

    async def _write(self, work: Callable[[Transaction], T]) -> T:
        return await self._committer.run(work)

    # -- uploads ----------------------------------------------------------------------------

    async def create_upload(self, session: UploadSession) -> None:
        subject = _subject(session.creator_id)
        caption = await self._personal.seal(subject, CAPTION, session.metadata.caption)
        filename = await self._personal.seal(subject, FILENAME, session.filename)

        def insert(tx: Transaction) -> None:
            inserted = tx.execute(
                "INSERT INTO uploads (upload_id, creator_id, metadata_json, declared_size, sha256, state,"
                " caption_sealed, filename_sealed, created_at, expires_at)"
                " VALUES (?, ?, ?, ?, ?, 'RECEIVING', ?, ?, ?, ?) ON CONFLICT (upload_id) DO NOTHING",
                (session.upload_id, session.creator_id, _dump_without_caption(session.metadata),
                 session.declared_size, session.sha256_hex, caption, filename, epoch_us(session.created_at),
                 epoch_us(session.expires_at)),
            ).rowcount
            if inserted != 1:  # the same client-chosen id, opened meanwhile (by another replica)
                raise ConcurrentUploadError(session.upload_id, 0)

        await self._write(insert)

    async def get_upload(self, upload_id: str) -> UploadSession | None:
        with self._reader.reading() as connection:
            row = connection.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
        return await self._opened_upload(row) if row else None

    async def uploads_of(self, creator_id: str) -> list[UploadSession]:
        """Every upload of a creator, oldest first (for their data-subject requests)."""
        with self._reader.reading() as connection:
            rows = connection.execute("SELECT * FROM uploads WHERE creator_id = ? ORDER BY created_at, upload_id",
                                      (creator_id,)).fetchall()
        return [await self._opened_upload(row) for row in rows]

    def media_of(self, creator_id: str) -> tuple[list[str], list[str]]:
        """(blob keys, blob key prefixes) of everything a creator uploaded or ingest made of it: upload
        parts, sources, and every transcode job's output, for their erasure."""
        with self._reader.reading() as connection:
            parts = connection.execute(
                "SELECT blob_key FROM upload_parts JOIN uploads USING (upload_id) WHERE creator_id = ?",
                (creator_id,)).fetchall()
            uploads = connection.execute("SELECT upload_id FROM uploads WHERE creator_id = ?", (creator_id,)).fetchall()
            outputs = connection.execute(
                "SELECT output_prefix FROM transcode_jobs JOIN videos USING (video_id) WHERE creator_id = ?",
                (creator_id,)).fetchall()
        keys = [str(row[0]) for row in parts] + [source_key(str(row[0])) for row in uploads]
        return keys, [str(row[0]) for row in outputs]

    async def forget_creator(self, creator_id: str) -> int:
        """Delete every row about a creator's uploads and videos (their erasure, after the media);
        the number of uploads it removed. Idempotent."""
        def forget(tx: Transaction) -> int:
            videos = "SELECT video_id FROM videos WHERE creator_id = ?"
            uploads = "SELECT upload_id FROM uploads WHERE creator_id = ?"
            tx.execute(f"DELETE FROM follow_ups WHERE video_id IN ({videos})", (creator_id,))
            tx.execute(f"DELETE FROM transcode_jobs WHERE video_id IN ({videos})", (creator_id,))
            tx.execute("DELETE FROM videos WHERE creator_id = ?", (creator_id,))
            tx.execute(f"DELETE FROM upload_parts WHERE upload_id IN ({uploads})", (creator_id,))
            return int(tx.execute("DELETE FROM uploads WHERE creator_id = ?", (creator_id,)).rowcount)

        return await self._write(forget)

    async def commit_part(self, upload_id: str, offset: int, size: int, blob_key: str) -> UploadSession:
        """Record a stored part and advance the committed offset, only from exactly `offset`.

        Two replicas racing on one upload cannot both commit the same range: the second
        update finds the offset moved and fails.
        """
        def commit(tx: Transaction) -> Any:
            moved = tx.execute(
                "UPDATE uploads SET committed_bytes = committed_bytes + ? WHERE upload_id = ?"
                " AND committed_bytes = ? AND state = 'RECEIVING'",
                (size, upload_id, offset),
            ).rowcount
            if moved != 1:
                raise ConcurrentUploadError(upload_id, offset)
            tx.execute('INSERT INTO upload_parts (upload_id, "offset", size, blob_key) VALUES (?, ?, ?, ?)',
                       (upload_id, offset, size, blob_key))
            return tx.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()

        return await self._opened_upload(await self._write(commit))

    def upload_parts(self, upload_id: str) -> list[tuple[int, int, str]]:
        """(offset, size, blob key) of every committed part, in order."""
        with self._reader.reading() as connection:
            rows = connection.execute(
                'SELECT "offset", size, blob_key FROM upload_parts WHERE upload_id = ? ORDER BY "offset"', (upload_id,)
            ).fetchall()
        return [(int(r["offset"]), int(r["size"]), str(r["blob_key"])) for r in rows]

    async def forget_parts(self, upload_id: str) -> None:
        await self._write(lambda tx: tx.execute("DELETE FROM upload_parts WHERE upload_id = ?", (upload_id,)))

    async def fail_upload(self, upload_id: str, reason: str, audit: AuditEvent,
                          trace_context: Mapping[str, str]) -> None:
        """The upload can never become a video (checksum mismatch, unusable media): it fails,
        and its rejection goes on the audit trail with it."""
        def fail(tx: Transaction) -> None:
            moved = tx.execute("UPDATE uploads SET state = 'FAILED', failure_reason = ? WHERE upload_id = ?"
                               " AND state = 'RECEIVING'", (reason, upload_id)).rowcount
            if moved:
                _add_audit_events(tx, [audit], trace_context)

        await self._write(fail)

    async def start_processing(self, video: Video, job: TranscodeJob, now: dt.datetime,
                               audit: Sequence[AuditEvent], trace_context: Mapping[str, str]) -> None:
        """Upload verified and probed: the upload completes, the video exists, its job is queued,
        an unanswered compliance review is scheduled to be asked again, and the upload's audit
        events (the upload, the verdicts it got) are written, all together."""
        caption = await self._personal.seal(_subject(video.creator_id), CAPTION, video.metadata.caption)

        def start(tx: Transaction) -> None:
            moved = tx.execute(
                "UPDATE uploads SET state = 'COMPLETED' WHERE upload_id = ? AND state = 'RECEIVING'",
                (video.video_id,),
            ).rowcount
            if moved != 1:
                raise ConcurrentUploadError(video.video_id, -1)
            tx.execute(
                "INSERT INTO videos (video_id, creator_id, metadata_json, caption_sealed, state, stage, probe_json,"
                " review_json, c2pa_json, publication, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, 'PROCESSING', 'QUEUED', ?, ?, ?, ?, ?, ?)",
                (video.video_id, video.creator_id, _dump_without_caption(video.metadata), caption, _dump(video.probe),
                 _dump(video.review), _dump(video.c2pa), video.review.publication.value, epoch_us(now),
                 epoch_us(now)),
            )
            tx.execute(
                "INSERT INTO transcode_jobs (job_id, video_id, state, output_prefix, trace_carrier_json,"
                " created_at, updated_at) VALUES (?, ?, 'QUEUED', ?, ?, ?, ?)",
                (job.job_id, job.video_id, job.output_prefix, json.dumps(job.trace_carrier), epoch_us(now), epoch_us(now)),
            )
            _settle_follow_ups(tx, video.video_id, now)
            _add_audit_events(tx, audit, trace_context)

        await self._write(start)

    # -- videos -----------------------------------------------------------------------------

    async def get_video(self, video_id: str) -> Video | None:
        with self._reader.reading() as connection:
            row = connection.execute("SELECT * FROM videos WHERE video_id = ?", (video_id,)).fetchone()
        return await self._opened_video(row) if row else None

    def video_version(self, video_id: str) -> int | None:
        """Cheap change check for watchers polling a video."""
        with self._reader.reading() as connection:
            row = connection.execute("SELECT version FROM videos WHERE video_id = ?", (video_id,)).fetchone()
        return int(row[0]) if row else None

    async def list_videos(self, creator_id: str, limit: int, after: tuple[dt.datetime, str] | None = None,
                          state: VideoState | None = None) -> list[Video]:
        """A creator's videos, newest first; `after` is the (created_at, video_id) of the last one seen."""
        conditions = ["creator_id = ?"]
        parameters: list[object] = [creator_id]
        if after is not None:
            conditions.append("(created_at, video_id) < (?, ?)")
            parameters += [epoch_us(after[0]), after[1]]
        if state is not None:
            conditions.append("state = ?")
            parameters.append(state.value)
        with self._reader.reading() as connection:
            rows = connection.execute(
                f"SELECT * FROM videos WHERE {' AND '.join(conditions)}"
                " ORDER BY created_at DESC, video_id DESC LIMIT ?",
                (*parameters, limit),
            ).fetchall()
        return [await self._opened_video(row) for row in rows]

    async def _opened_video(self, row: Any) -> Video:
        video = _video(row)
        caption = await self._opened(video.creator_id, CAPTION, row["caption_sealed"], video.metadata.caption)
        return dataclasses.replace(video, metadata=dataclasses.replace(video.metadata, caption=caption))

    async def _opened_upload(self, row: Any) -> UploadSession:
        upload = _upload(row)
        caption = await self._opened(upload.creator_id, CAPTION, row["caption_sealed"], upload.metadata.caption)
        filename = await self._opened(upload.creator_id, FILENAME, row["filename_sealed"], upload.filename)
        return dataclasses.replace(upload, metadata=dataclasses.replace(upload.metadata, caption=caption),
                                   filename=filename)

    async def _opened(self, creator_id: str, field_name: str, sealed: bytes | None, legacy: str) -> str:
        """The field's text: '' once the creator was erased; a row older than schema 5 has it in the clear."""
        if sealed is None:
            return legacy
        return await self._personal.open(_subject(creator_id), field_name, sealed) or ""

    async def apply_review(self, video_id: str, review: ComplianceReview, now: dt.datetime,
                           audit: PublicationAudit, trace_context: Mapping[str, str]) -> None:
        """Record compliance's (new) verdicts; publishing, ranking and the audit events of what
        changed (`audit(before, after)`) follow from them in the same transaction."""
        def apply(tx: Transaction) -> None:
            before = _video_in(tx, video_id)
            tx.execute(
                "UPDATE videos SET review_json = ?, publication = ?, version = version + 1, updated_at = ?"
                " WHERE video_id = ?",
                (_dump(review), review.publication.value, epoch_us(now), video_id),
            )
            _settle_follow_ups(tx, video_id, now)
            _add_audit_events(tx, audit(before, _video_in(tx, video_id)), trace_context)

        await self._write(apply)

    # -- transcode jobs ---------------------------------------------------------------------

    def unfinished_jobs(self, *, unheld_at: dt.datetime | None = None) -> list[TranscodeJob]:
        """Jobs still QUEUED or RUNNING, oldest first; with `unheld_at`, only those no replica holds
        a lease on then (their replica stopped or died)."""
        held = "" if unheld_at is None else " AND lease_until <= ?"
        with self._reader.reading() as connection:
            rows = connection.execute(
                f"SELECT * FROM transcode_jobs WHERE state IN ('QUEUED', 'RUNNING'){held} ORDER BY created_at",
                () if unheld_at is None else (epoch_us(unheld_at),),
            ).fetchall()
        return [_job(row) for row in rows]

    async def mark_job_submitted(self, job_id: str, now: dt.datetime, *, holder: str,
                                 lease_until: dt.datetime) -> TranscodeJob | None:
        """Claim the job for `holder` until `lease_until` and count one more submission: it is RUNNING.

        None if it finished meanwhile, or another holder's lease on it is still running at `now`;
        the check and the claim are one transaction, so two replicas never both take it.
        """
        def mark(tx: Transaction) -> TranscodeJob | None:
            claimed = tx.execute(
                "UPDATE transcode_jobs SET state = 'RUNNING', submissions = submissions + 1, lease_holder = ?,"
                " lease_until = ?, updated_at = ? WHERE job_id = ? AND state IN ('QUEUED', 'RUNNING')"
                " AND (lease_holder = ? OR lease_until <= ?)",
                (holder, epoch_us(lease_until), epoch_us(now), job_id, holder, epoch_us(now)),
            ).rowcount
            if claimed != 1:
                return None
            row = tx.execute("SELECT * FROM transcode_jobs WHERE job_id = ?", (job_id,)).fetchone()
            tx.execute(
                "UPDATE videos SET stage = 'TRANSCODING', version = version + 1, updated_at = ?"
                " WHERE video_id = ? AND state = 'PROCESSING'",
                (epoch_us(now), row["video_id"]),
            )
            return _job(row)

        return await self._write(mark)

    async def renew_job_lease(self, job_id: str, holder: str, lease_until: dt.datetime) -> bool:
        """Extend `holder`'s lease on a job it still holds and that is still running; whether it did."""
        return await self._write(lambda tx: tx.execute(
            "UPDATE transcode_jobs SET lease_until = ? WHERE job_id = ? AND lease_holder = ?"
            " AND state = 'RUNNING'",
            (epoch_us(lease_until), job_id, holder),
        ).rowcount == 1)

    async def release_job_leases(self, holder: str) -> None:
        """`holder` stops: its unfinished jobs may be taken over at once."""
        await self._write(lambda tx: tx.execute(
            "UPDATE transcode_jobs SET lease_until = 0 WHERE lease_holder = ? AND state IN ('QUEUED', 'RUNNING')",
            (holder,),
        ))

    async def record_progress(self, video_id: str, progress: float, now: dt.datetime) -> None:
        await self._write(lambda tx: tx.execute(
            "UPDATE videos SET progress = ?, stage = ?, version = version + 1, updated_at = ?"
            " WHERE video_id = ? AND state = 'PROCESSING' AND progress < ?",
            (progress, stage_for_progress(progress).value, epoch_us(now), video_id, progress),
        ))

    async def complete_job(self, job_id: str, media: PublishedMedia, now: dt.datetime,
                           audit: PublicationAudit, trace_context: Mapping[str, str]) -> None:
        """Commit a finished job: its prefix becomes the video's media, and the audit events of
        what that changed (`audit(before, after)`: published, held), in one transaction."""
        def complete(tx: Transaction) -> None:
            job = tx.execute("SELECT video_id FROM transcode_jobs WHERE job_id = ?", (job_id,)).fetchone()
            moved = tx.execute(
                "UPDATE transcode_jobs SET state = 'SUCCEEDED', updated_at = ? WHERE job_id = ?"
                " AND state IN ('QUEUED', 'RUNNING')",
                (epoch_us(now), job_id),
            ).rowcount
            if moved != 1:
                return  # already committed by an earlier attempt: one effect per job
            before = _video_in(tx, job["video_id"])
            tx.execute(
                "UPDATE videos SET state = 'READY', stage = 'DONE', media_json = ?, progress = 1,"
                " version = version + 1, updated_at = ? WHERE video_id = ?",
                (_dump(media), epoch_us(now), job["video_id"]),
            )
            _settle_follow_ups(tx, job["video_id"], now)
            _add_audit_events(tx, audit(before, _video_in(tx, job["video_id"])), trace_context)

        await self._write(complete)

    async def fail_job(self, job_id: str, reason: str, message: str, now: dt.datetime) -> None:
        def fail(tx: Transaction) -> None:
            moved = tx.execute(
                "UPDATE transcode_jobs SET state = 'FAILED', failure_reason = ?, failure_message = ?,"
                " updated_at = ? WHERE job_id = ? AND state IN ('QUEUED', 'RUNNING')",
                (reason, message, epoch_us(now), job_id),
            ).rowcount
            if moved != 1:
                return  # finished already (another replica ran it to the end): its outcome stands
            video_id = tx.execute("SELECT video_id FROM transcode_jobs WHERE job_id = ?", (job_id,)).fetchone()[0]
            tx.execute(
                "UPDATE videos SET state = 'FAILED', stage = 'DONE', failure_reason = ?, failure_message = ?,"
                " ranking_state = 'NOT_APPLICABLE', version = version + 1, updated_at = ? WHERE video_id = ?",
                (reason, message, epoch_us(now), video_id),
            )
            tx.execute("DELETE FROM follow_ups WHERE video_id = ?", (video_id,))

        await self._write(fail)

    # -- follow-ups: compliance reviews and registrations with ranking ---------------------

    def due_follow_ups(self, kind: FollowUp, now: dt.datetime, limit: int = 50) -> list[DueFollowUp]:
        with self._reader.reading() as connection:
            rows = connection.execute(
                "SELECT video_id, attempts, trace_carrier_json FROM follow_ups"
                " WHERE kind = ? AND next_attempt_at <= ? ORDER BY next_attempt_at LIMIT ?",
                (kind.value, epoch_us(now), limit),
            ).fetchall()
        return [DueFollowUp(str(r["video_id"]), int(r["attempts"]), json.loads(r["trace_carrier_json"]))
                for r in rows]

    async def defer_follow_up(self, video_id: str, kind: FollowUp, retry_at: dt.datetime, error: str) -> None:
        await self._write(lambda tx: tx.execute(
            "UPDATE follow_ups SET attempts = attempts + 1, next_attempt_at = ?, last_error = ?"
            " WHERE video_id = ? AND kind = ?",
            (epoch_us(retry_at), error[:500], video_id, kind.value),
        ))

    async def registration_succeeded(self, video_id: str, now: dt.datetime) -> None:
        def registered(tx: Transaction) -> None:
            tx.execute("DELETE FROM follow_ups WHERE video_id = ? AND kind = 'RANKING_REGISTRATION'", (video_id,))
            tx.execute(
                "UPDATE videos SET ranking_state = 'REGISTERED', version = version + 1, updated_at = ?"
                " WHERE video_id = ?",
                (epoch_us(now), video_id),
            )

        await self._write(registered)

    async def ad_registered(self, video_id: str, ad_name: str, now: dt.datetime) -> None:
        def registered(tx: Transaction) -> None:
            tx.execute("DELETE FROM follow_ups WHERE video_id = ? AND kind = 'AD_REGISTRATION'", (video_id,))
            tx.execute("UPDATE videos SET ad_name = ?, version = version + 1, updated_at = ? WHERE video_id = ?",
                       (ad_name, epoch_us(now), video_id))

        await self._write(registered)


def _add_audit_events(tx: Transaction, events: Sequence[AuditEvent], trace_context: Mapping[str, str]) -> None:
    for event in events:
        write_event(tx, TracedEvent(event, trace_context))


def _video_in(tx: Transaction, video_id: str) -> Video:
    return _video(tx.execute("SELECT * FROM videos WHERE video_id = ?", (video_id,)).fetchone())


def _settle_follow_ups(tx: Transaction, video_id: str, now: dt.datetime) -> None:
    """After any change of state or verdicts: publish what may be published, keep asking
    compliance while a verdict is missing, and owe ranking a registration once published
    (and the ad repository an entry, for commercial content)."""
    row = tx.execute("SELECT state, publication, ranking_state, ad_name FROM videos WHERE video_id = ?",
                     (video_id,)).fetchone()
    carrier = tx.execute(
        "SELECT trace_carrier_json FROM transcode_jobs WHERE video_id = ? ORDER BY created_at DESC LIMIT 1",
        (video_id,),
    ).fetchone()
    carrier_json = carrier[0] if carrier else "{}"
    if row["publication"] == "PENDING_REVIEW":
        tx.execute("INSERT INTO follow_ups (video_id, kind, next_attempt_at, trace_carrier_json)"
                   " VALUES (?, 'COMPLIANCE_REVIEW', ?, ?) ON CONFLICT (video_id, kind) DO NOTHING",
                   (video_id, epoch_us(now), carrier_json))
    else:
        tx.execute("DELETE FROM follow_ups WHERE video_id = ? AND kind = 'COMPLIANCE_REVIEW'", (video_id,))
    if row["publication"] == "HELD":
        tx.execute("UPDATE videos SET ranking_state = 'NOT_APPLICABLE' WHERE video_id = ?", (video_id,))
    if row["state"] == "READY" and row["publication"] == "PUBLISHED" and row["ranking_state"] == "PENDING":
        tx.execute("UPDATE videos SET published_at = COALESCE(published_at, ?) WHERE video_id = ?",
                   (epoch_us(now), video_id))
        tx.execute("INSERT INTO follow_ups (video_id, kind, next_attempt_at, trace_carrier_json)"
                   " VALUES (?, 'RANKING_REGISTRATION', ?, ?) ON CONFLICT (video_id, kind) DO NOTHING",
                   (video_id, epoch_us(now), carrier_json))
        if not row["ad_name"] and _video_in(tx, video_id).is_commercial:
            tx.execute("INSERT INTO follow_ups (video_id, kind, next_attempt_at, trace_carrier_json)"
                       " VALUES (?, 'AD_REGISTRATION', ?, ?) ON CONFLICT (video_id, kind) DO NOTHING",
                       (video_id, epoch_us(now), carrier_json))


# -- row mapping ------------------------------------------------------------------------


def _subject(creator_id: str) -> str:
    """The data subject a creator's fields belong to: creators are users, by the same id."""
    return f"users/{creator_id}"


def _dump_without_caption(metadata: VideoMetadata) -> str:
    return _dump(dataclasses.replace(metadata, caption=""))


def _dump(value: object) -> str:
    return json.dumps(dataclasses.asdict(value), separators=(",", ":"), default=_json_default)  # type: ignore[call-overload]


def _json_default(value: object) -> str:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__}")


def _video(row: Any) -> Video:
    return Video(
        video_id=row["video_id"],
        creator_id=row["creator_id"],
        metadata=_metadata(json.loads(row["metadata_json"])),
        state=VideoState(row["state"]),
        stage=ProcessingStage(row["stage"]),
        created_at=from_epoch_us(row["created_at"]),
        updated_at=from_epoch_us(row["updated_at"]),
        probe=MediaProbe(**json.loads(row["probe_json"])),
        review=_review(json.loads(row["review_json"])),
        c2pa=_c2pa(json.loads(row["c2pa_json"])),
        progress=float(row["progress"]),
        failure_reason=row["failure_reason"],
        failure_message=row["failure_message"],
        media=_media(json.loads(row["media_json"])) if row["media_json"] else None,
        ranking=RankingRegistration(row["ranking_state"]),
        published_at=from_epoch_us(row["published_at"]) if row["published_at"] is not None else None,
        ad_name=row["ad_name"],
        version=int(row["version"]),
    )


def _metadata(fields: dict[str, Any]) -> VideoMetadata:
    commercial, ai = fields["commercial"], fields["ai"]
    return VideoMetadata(
        caption=fields["caption"],
        hashtags=tuple(fields["hashtags"]),
        commercial=CommercialDeclaration(CommercialRelationship(commercial["relationship"]),
                                         commercial["brand_name"], commercial["payer_name"]),
        ai=AiDeclaration(AiUsage(ai["usage"]), ai["depicts_real_people_or_events"]),
        product_tags=tuple(fields["product_tags"]),
        affiliate_links=tuple(fields["affiliate_links"]),
        disclosure_label=fields["disclosure_label"],
    )


def _review(fields: dict[str, Any]) -> ComplianceReview:
    return ComplianceReview(
        disclosure_verdict=DisclosureVerdict(fields["disclosure_verdict"]),
        required_disclosure_label=fields["required_disclosure_label"],
        ai_label=AiLabel(fields["ai_label"]),
        ai_needs_review=fields["ai_needs_review"],
        deepfake_disclosure_required=fields["deepfake_disclosure_required"],
        findings=tuple(Finding(**finding) for finding in fields["findings"]),
        reviewed_at=dt.datetime.fromisoformat(fields["reviewed_at"]) if fields["reviewed_at"] else None,
        # Reviews stored before these facts were kept read as "not recorded".
        is_advertising=fields.get("is_advertising", False),
        required_placement=fields.get("required_placement", ""),
        ai_label_text=fields.get("ai_label_text", ""),
        rules_version=fields.get("rules_version", ""),
    )


def _c2pa(fields: dict[str, Any]) -> C2paEvidence:
    return C2paEvidence(C2paValidation(fields["validation"]), fields["trusted"],
                        tuple(fields["digital_source_types"]), fields["claim_generator"], fields["signer"])


def _media(fields: dict[str, Any]) -> PublishedMedia:
    return PublishedMedia(
        prefix=fields["prefix"],
        master_playlist_path=fields["master_playlist_path"],
        poster_path=fields["poster_path"],
        thumbnail_paths=tuple(fields["thumbnail_paths"]),
        renditions=tuple(RenditionRecord(**r) for r in fields["renditions"]),
        video_encoder=fields["video_encoder"],
    )


def _upload(row: Any) -> UploadSession:
    return UploadSession(
        upload_id=row["upload_id"],
        creator_id=row["creator_id"],
        metadata=_metadata(json.loads(row["metadata_json"])),
        declared_size=int(row["declared_size"]),
        sha256_hex=row["sha256"],
        committed_bytes=int(row["committed_bytes"]),
        state=UploadState(row["state"]),
        created_at=from_epoch_us(row["created_at"]),
        expires_at=from_epoch_us(row["expires_at"]),
        filename=row["filename"],
        failure_reason=row["failure_reason"],
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
