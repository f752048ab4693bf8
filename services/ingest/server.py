"""Ingest's one wiring place: the real adapters into the use cases, the use cases into gRPC.

`build(runtime)` is what the kit starts (`limelight up`, tests); `assemble` joins ports
and settings into the use cases, for `build` and for integration tests with their own
ports. The HLS output is served over HTTP on loopback and each video names its playback
root (see `config.py` for the port).
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from libs.audit.client import AuditClient
from libs.audit.pseudonyms import Pseudonymizer
from libs.auth.principal import Role
from libs.blobstore import LocalBlobStore
from libs.blobstore.http_server import BlobHTTPServer
from libs.clock import Clock, utc_now
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.server import ServiceDefinition, ServiceRuntime, package_definition
from libs.privacy.remote import personal_data_for
from libs.privacy.servicer import SUBJECT_DATA_ACCESS, SUBJECT_DATA_SERVICE, SubjectDataServicer
from services.ingest.clients import AdRepositoryClient, ComplianceClient, RankingClient
from services.ingest.config import IngestConfig
from services.ingest.data_map import DATA_MAP
from services.ingest.provenance import read_c2pa
from services.ingest.servicer import IngestServicer
from services.ingest.store import IngestStore
from services.ingest.tracing import KitTracing
from services.ingest.usecases import Ingest
from services.ingest.usecases.audit_events import AuditEvents
from services.ingest.usecases.ports import (
    AdRepository,
    ComplianceChecker,
    MediaBlobs,
    ProvenanceReader,
    Pseudonyms,
    RankingRegistrar,
    Tracing,
    Transcoder,
)
from services.ingest.usecases.ports import IngestStore as StorePort
from services.ingest.usecases.processing import FollowUps, TranscodeJobs
from services.ingest.usecases.reading import Videos
from services.ingest.usecases.subject_data import SubjectData
from services.ingest.usecases.uploading import CompleteUpload, Rejections, Uploads
from services.ingest.workers import RayTranscoder

INGEST = "limelight.ingest.v1.IngestService"


def assemble(*, store: StorePort, blobs: MediaBlobs, transcoder: Transcoder, compliance: ComplianceChecker,
             ranking: RankingRegistrar, ads: AdRepository, read_provenance: ProvenanceReader, tracing: Tracing,
             pseudonyms: Pseudonyms, clock: Clock, config: IngestConfig, telemetry_root: Path) -> Ingest:
    audit = AuditEvents(clock=clock, tracing=tracing, pseudonyms=pseudonyms)
    follow_ups = FollowUps(store=store, compliance=compliance, ranking=ranking, ads=ads, audit=audit,
                           tracing=tracing, clock=clock, config=config)
    jobs = TranscodeJobs(store=store, blobs=blobs, transcoder=transcoder, follow_ups=follow_ups, audit=audit,
                         tracing=tracing, clock=clock, config=config, telemetry_root=str(telemetry_root))
    rejections = Rejections(store=store, blobs=blobs, audit=audit, tracing=tracing)
    return Ingest(
        uploads=Uploads(store=store, blobs=blobs, clock=clock, limits=config.upload_limits,
                        probe_limits=config.probe_limits, rejections=rejections),
        complete_upload=CompleteUpload(store=store, blobs=blobs, read_provenance=read_provenance,
                                       compliance=compliance, jobs=jobs, audit=audit, tracing=tracing, clock=clock,
                                       probe_limits=config.probe_limits, rejections=rejections),
        videos=Videos(store=store, watch_poll=config.watch_poll),
        jobs=jobs,
        follow_ups=follow_ups,
    )


def build(runtime: ServiceRuntime, config: IngestConfig | None = None) -> ServiceDefinition:
    """The ingest service; its settings come from the environment unless given (tests)."""
    config = config or IngestConfig.from_environment()
    store = IngestStore.open(runtime.data_root, personal=personal_data_for(runtime))
    blobs = LocalBlobStore(runtime.data_root / "ingest" / "blobs")
    playback = BlobHTTPServer(blobs, port=config.playback_port)
    transcoder = RayTranscoder(task_options={"num_cpus": config.transcode_cpus} if config.transcode_cpus else None)
    # Ingest writes its audit events into its own store with each change (the outbox); the
    # shared client ships them from there, woken by every commit.
    audit_shipper = AuditClient.for_runtime(runtime, outbox=store.audit_outbox)
    store.add_commit_listener(audit_shipper.wake_shipper)
    ingest = assemble(
        store=store, blobs=blobs, transcoder=transcoder, compliance=ComplianceClient(runtime.clients),
        ranking=RankingClient(runtime.clients), ads=AdRepositoryClient(runtime.clients), read_provenance=read_c2pa, tracing=KitTracing(),
        pseudonyms=Pseudonymizer.for_deployment(runtime.data_root), clock=utc_now, config=config,
        telemetry_root=runtime.data_root,
    )

    async def on_start() -> None:
        await audit_shipper.start()
        playback.start()
        await ingest.start()

    async def on_stop() -> None:
        await ingest.stop()
        await audit_shipper.stop()
        playback.stop()
        await asyncio.to_thread(transcoder.close)
        await asyncio.to_thread(store.close)

    return package_definition(
        "limelight.ingest.v1",
        {INGEST: IngestServicer(ingest, playback_base_url=playback.base_url, clock=utc_now),
         SUBJECT_DATA_SERVICE: SubjectDataServicer(DATA_MAP, SubjectData(store=store, blobs=blobs))},
        policy=AccessPolicy(roles={
            **method_paths(INGEST, {"UploadVideo": frozenset({Role.CREATOR})}),
            **SUBJECT_DATA_ACCESS,
        }),
        on_start=on_start,
        on_stop=on_stop,
    )
