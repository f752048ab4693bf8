"""Data-subject requests across real servers: compliance gathers gifts' and ingest's exports, and
an erasure shreds the user's key so no caption is left to read in any database file, while the
ledger keeps its records (by law) and still balances.

Compliance calls gifts and ingest for exports and they call it for keys, so their ports are
chosen before any starts. Ray is not needed: the seeded video's transcode has failed.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from limelight.compliance.v1 import (
    audit_pb2,
    audit_pb2_grpc,
    consent_pb2,
    consent_pb2_grpc,
    privacy_pb2,
    privacy_pb2_grpc,
)
from limelight.gifts.v1 import (
    gifts_pb2,
    gifts_pb2_grpc,
    live_pb2,
    live_pb2_grpc,
    standing_pb2,
    standing_pb2_grpc,
    wallet_pb2,
    wallet_pb2_grpc,
)
from limelight.ingest.v1 import ingest_pb2, ingest_pb2_grpc
from limelight.ranking.v1 import follows_pb2, follows_pb2_grpc
from opentelemetry import trace
from typer.testing import CliRunner

from libs.audit.events import AuditEvent, Outcome
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.blobstore import LocalBlobStore
from libs.kit.clients import ServiceClients, ServiceTokenSource
from libs.kit.server import RunningService, start_service
from libs.ports import reserve_port
from libs.privacy.fields import PersonalData
from libs.privacy.remote import RemoteDataKeys
from services.affiliate import server as affiliate_server
from services.compliance import server as compliance_server
from services.gifts import server as gifts_server
from services.gifts.config import GiftsConfig
from services.gifts.providers import issue_dev_receipt
from services.ingest import server as ingest_server
from services.ingest.model import (
    ComplianceReview,
    JobState,
    ProcessingStage,
    TranscodeJob,
    Video,
    VideoMetadata,
    VideoState,
    source_key,
)
from services.ingest.probe import MediaProbe
from services.ingest.store import IngestStore
from services.ingest.uploads import UploadSession, UploadState
from services.ranking import server as ranking_server
from services.shop import server as shop_server
from tools import audit_cli

T0 = dt.datetime(2026, 5, 1, 12, tzinfo=dt.UTC)
PROBE = MediaProbe("mov,mp4,m4a,3gp,3g2,mj2", "h264", "aac", 4.0, 1080, 1920, 0, 120, 30.0, False)
CAPTION = "Alice and Grace at the Lisbon marathon"
MEDIA = b"frames of Alice and Grace running"
VIDEO = "creators/alice/videos/run-1"
ACCESS = privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_ACCESS
ERASURE = privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_ERASURE


@dataclass
class Platform:
    data_root: Path
    compliance: str
    ingest: str
    gifts: str
    ranking: str

    def alice(self) -> tuple[tuple[str, str], ...]:
        return self.as_("users/alice", Role.CREATOR)

    def as_(self, subject: str, *roles: Role) -> tuple[tuple[str, str], ...]:
        claims = TokenClaims(subject, frozenset({Role.VIEWER, *roles}), birth_date=dt.date(1990, 1, 1))
        token = mint_token(platform_signing_key(self.data_root), claims, ttl=dt.timedelta(minutes=5))
        return (("authorization", f"Bearer {token}"),)


async def seed_video(data_root: Path, compliance: str) -> None:
    clients = ServiceClients(tracer=trace.get_tracer("test"), targets={"compliance": compliance},
                             service_token=ServiceTokenSource("ingest", platform_signing_key(data_root)))
    store = IngestStore.open(data_root, personal=PersonalData(RemoteDataKeys(
        clients.stub("compliance", privacy_pb2_grpc.PersonalDataKeyServiceStub))))
    metadata = VideoMetadata(caption=CAPTION, hashtags=("running",))
    await store.create_upload(UploadSession("run-1", "alice", metadata, 100, "ab" * 32, 0, UploadState.RECEIVING,
                                            T0, T0 + dt.timedelta(days=1), filename="grace-and-me.mp4"))
    await store.start_processing(
        Video("run-1", "alice", metadata, VideoState.PROCESSING, ProcessingStage.QUEUED, T0, T0, PROBE,
              review=ComplianceReview()),
        TranscodeJob("job-1", "run-1", JobState.QUEUED, "videos/run-1/hls/job-1/", {}), T0,
        [AuditEvent(event_id=str(uuid.uuid4()), actor="users/alice", action="ingest.UploadVideo", resource=VIDEO,
                    outcome=Outcome.SUCCEEDED, event_time=T0)], {})
    await store.fail_job("job-1", "TRANSCODE_FAILED", "seeded", T0)
    store.close()
    blobs = LocalBlobStore(data_root / "ingest" / "blobs")
    blobs.put(source_key("run-1"), MEDIA)
    blobs.put("videos/run-1/hls/job-1/720x1280/seg_00000.ts", MEDIA)
    await clients.close()


@pytest.fixture
async def platform(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Platform]:
    monkeypatch.setenv("LIMELIGHT_PRIVACY_KEY_CACHE_SECONDS", "0.2")
    monkeypatch.setenv("LIMELIGHT_PRIVACY_SOURCES", "affiliate,gifts,ingest,ranking,shop")
    monkeypatch.setenv("LIMELIGHT_GIFTS_LEDGER", "in-process")
    monkeypatch.setenv("LIMELIGHT_RANKING_SCORER", "in-process")  # the feed is not under test: no Ray
    ports = {service: reserve_port() for service in ("compliance", "affiliate", "gifts", "ingest", "ranking", "shop")}
    compliance = await start_service("compliance", compliance_server.build, port=ports["compliance"],
                                     data_root=tmp_path,
                                     targets={name: f"127.0.0.1:{port}" for name, port in ports.items()})
    await seed_video(tmp_path, compliance.target)
    targets = {name: f"127.0.0.1:{port}" for name, port in ports.items()}
    ranking = await start_service("ranking", ranking_server.build, port=ports["ranking"], data_root=tmp_path,
                                  targets=targets)
    affiliate = await start_service("affiliate", affiliate_server.build, port=ports["affiliate"], data_root=tmp_path,
                                    targets=targets)
    ingest: RunningService = await start_service("ingest", ingest_server.build, port=ports["ingest"],
                                                 data_root=tmp_path, targets=targets)
    # Gifts without ranking: Bob's admin-set follower count lets him go LIVE without a thousand real fans.
    gifts = await start_service("gifts", gifts_server.build, port=ports["gifts"], data_root=tmp_path,
                                targets={name: target for name, target in targets.items() if name != "ranking"})
    shop = await start_service("shop", shop_server.build, port=ports["shop"], data_root=tmp_path, targets=targets)
    try:
        yield Platform(tmp_path, compliance.target, ingest.target, gifts.target, ranking.target)
    finally:
        await shop.stop(grace=1)
        await gifts.stop(grace=1)
        await ranking.stop(grace=1)
        await affiliate.stop(grace=1)
        await ingest.stop(grace=1)
        await compliance.stop(grace=0)


async def give_a_gift(platform: Platform) -> None:
    """Alice buys coins and sends Bob a gift in his LIVE."""
    async with grpc.aio.insecure_channel(platform.gifts) as channel:
        standing = standing_pb2.UpdateAccountStandingRequest(standing=standing_pb2.AccountStanding(
            name="users/bob/standing", follower_count=5_000, identity_verified=True))
        standing.update_mask.paths.extend(["follower_count", "identity_verified"])
        await standing_pb2_grpc.AccountStandingServiceStub(channel).UpdateAccountStanding(
            standing, metadata=platform.as_("users/ops", Role.ADMIN))
        live = (await live_pb2_grpc.LiveServiceStub(channel).StartLive(live_pb2.StartLiveRequest(
            parent="creators/bob", request_id=str(uuid.uuid4()), title="Bob's evening"),
            metadata=platform.as_("users/bob", Role.CREATOR))).live_session.name
        receipt = issue_dev_receipt(platform.data_root, GiftsConfig().catalog, user_id="alice", pack_id="coins-1000",
                                    now=dt.datetime.now(dt.UTC))
        await wallet_pb2_grpc.WalletServiceStub(channel).TopUpCoins(wallet_pb2.TopUpCoinsRequest(
            request_id=str(uuid.uuid4()), wallet="users/alice/wallet", coin_pack="coinPacks/coins-1000",
            receipt=wallet_pb2.PaymentReceipt(provider="local", receipt=receipt)), metadata=platform.alice())
        await gifts_pb2_grpc.GiftServiceStub(channel).SendGift(gifts_pb2.SendGiftRequest(
            request_id=str(uuid.uuid4()), live=live, gift="gifts/doughnut", count=1), metadata=platform.alice())


async def follow_bob(platform: Platform) -> None:
    async with grpc.aio.insecure_channel(platform.ranking) as channel:
        await follows_pb2_grpc.FollowServiceStub(channel).FollowCreator(
            follows_pb2.FollowCreatorRequest(follower="users/alice", creator="creators/bob"), metadata=platform.alice())


async def consent_to_the_personalised_feed(platform: Platform) -> None:
    async with grpc.aio.insecure_channel(platform.compliance) as channel:
        request = consent_pb2.RecordConsentRequest(
            parent="users/alice", request_id=str(uuid.uuid4()), purpose=consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT,
            decision=consent_pb2.CONSENT_DECISION_GRANTED, notice_version="2026-11", source="app/settings",
            method=consent_pb2.CONSENT_METHOD_SETTINGS_TOGGLE)
        request.decision_time.FromDatetime(dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=5))
        await consent_pb2_grpc.ConsentServiceStub(channel).RecordConsent(request, metadata=platform.alice())


def ledger_totals(data_root: Path) -> list[tuple[str, int, int]]:
    """(currency, all debits, all credits) over every account of the ledger file."""
    with sqlite3.connect(next(data_root.rglob("gifts.db"))) as connection:
        rows = connection.execute(
            "SELECT currency, SUM(debits_posted + debits_pending), SUM(credits_posted + credits_pending)"
            " FROM account GROUP BY currency ORDER BY currency").fetchall()
    return [(str(currency), int(debits), int(credits)) for currency, debits, credits in rows]


async def export_of(stub: privacy_pb2_grpc.DataSubjectServiceAsyncStub, platform: Platform) -> dict[str, Any]:
    created = (await stub.CreateDataSubjectRequest(privacy_pb2.CreateDataSubjectRequestRequest(
        parent="users/alice", request_id=str(uuid.uuid4()), type=ACCESS), metadata=platform.alice())
    ).data_subject_request
    assert created.state == privacy_pb2.DATA_SUBJECT_REQUEST_STATE_COMPLETED, created.progress
    data, digest = b"", ""
    async for chunk in stub.DownloadDataExport(privacy_pb2.DownloadDataExportRequest(name=created.name),
                                               metadata=platform.alice()):
        data, digest = data + chunk.data, chunk.sha256 or digest
    assert hashlib.sha256(data).hexdigest() == digest
    archive: dict[str, Any] = json.loads(data)
    return archive


async def test_an_export_gathers_every_service_and_an_erasure_leaves_no_caption_anywhere(platform: Platform) -> None:
    async with grpc.aio.insecure_channel(platform.compliance) as to_compliance, \
            grpc.aio.insecure_channel(platform.ingest) as to_ingest:
        requests = privacy_pb2_grpc.DataSubjectServiceStub(to_compliance)
        videos = ingest_pb2_grpc.IngestServiceStub(to_ingest)

        record = await requests.ListProcessingActivities(privacy_pb2.ListProcessingActivitiesRequest())
        assert {"services/affiliate", "services/compliance", "services/gifts", "services/ingest", "services/ranking",
                "services/shop"} == {activity.service for activity in record.activities}
        await give_a_gift(platform)
        await consent_to_the_personalised_feed(platform)
        await follow_bob(platform)
        archive = await export_of(requests, platform)
        consent_records = archive["sources"]["services/compliance"]["consent_records"]
        assert [(r["purpose"], r["decision"], r["notice_version"], r["source"]) for r in consent_records] == [
            ("PERSONALISED_CONTENT", "GRANTED", "2026-11", "app/settings")]
        assert {entry["source"] for entry in archive["index"]} == {
            "services/affiliate", "services/compliance", "services/gifts", "services/ingest", "services/ranking",
            "services/shop"}
        assert [follow["creator"] for follow in archive["sources"]["services/ranking"]["follows"]] == ["bob"]
        assert archive["sources"]["services/gifts"]["wallet"]["COINS"]["credits_posted"] > 0
        ingest_part = archive["sources"]["services/ingest"]
        assert [video["caption"] for video in ingest_part["videos"]] == [CAPTION]
        assert [upload["filename"] for upload in ingest_part["uploads"]] == ["grace-and-me.mp4"]

        erased = (await requests.CreateDataSubjectRequest(privacy_pb2.CreateDataSubjectRequestRequest(
            parent="users/alice", request_id=str(uuid.uuid4()), type=ERASURE), metadata=platform.alice())
        ).data_subject_request
        assert erased.state == privacy_pb2.DATA_SUBJECT_REQUEST_STATE_COMPLETED
        assert [(step.service, step.done) for step in erased.progress] == [
            ("services/compliance", True), ("services/affiliate", True), ("services/gifts", True),
            ("services/ingest", True), ("services/ranking", True), ("services/shop", True),
            ("services/compliance", True)]
        # Kept, each under its law: the audit trail, the ledger, and the consent decisions as proof of consent.
        assert {"compliance.audit_trail", "gifts.ledger", "compliance.consent_records"} <= {
            kept.data_category for kept in erased.retention_exceptions}

        with pytest.raises(grpc.aio.AioRpcError) as gone:  # ingest deleted the video with its media
            await videos.GetVideo(ingest_pb2.GetVideoRequest(name=VIDEO), metadata=platform.alice())
        assert gone.value.code() is grpc.StatusCode.NOT_FOUND

        after = await export_of(requests, platform)
        assert CAPTION not in json.dumps(after) and "grace-and-me" not in json.dumps(after)
        assert after["sources"]["services/compliance"] == {}
        assert after["sources"]["services/ranking"] == {}

    every_byte = b"".join(path.read_bytes() for path in platform.data_root.rglob("*") if path.is_file())
    assert CAPTION.encode() not in every_byte and b"grace-and-me" not in every_byte and MEDIA not in every_byte
    assert [path for path in (platform.data_root / "ingest" / "blobs").rglob("*") if path.is_file()] == []
    # The ledger keeps its records (by law) and still balances: every debit has its credit.
    totals = ledger_totals(platform.data_root)
    assert totals and all(debits == credits for _, debits, credits in totals)
    await the_audit_trail_holds_the_erasure_and_verifies_offline(platform)


async def the_audit_trail_holds_the_erasure_and_verifies_offline(platform: Platform) -> None:
    officer = platform.as_("users/olga", Role.COMPLIANCE_OFFICER)
    async with grpc.aio.insecure_channel(platform.compliance) as channel:
        audit = audit_pb2_grpc.AuditServiceStub(channel)
        deadline = asyncio.get_running_loop().time() + 10.0
        logged: list[audit_pb2.LoggedEvent] = []
        while not logged and asyncio.get_running_loop().time() < deadline:  # the outbox ships in the background
            logged = list((await audit.QueryEvents(audit_pb2.QueryEventsRequest(
                filter=audit_pb2.EventFilter(action="compliance.ShredDataKey")), metadata=officer)).events)
        assert logged, "the erasure's last step reached the audit trail"
        while (await audit.GetCheckpoint(audit_pb2.GetCheckpointRequest())).checkpoint.tree_size <= \
                logged[0].leaf_index and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
    exported = platform.data_root / "audit-export.jsonl"
    environment = {"LIMELIGHT_TOKEN": officer[0][1].removeprefix("Bearer "),
                   "LIMELIGHT_COMPLIANCE_TARGET": platform.compliance, "COLUMNS": "250"}
    for command in (["export", "--out", str(exported)], ["key"]):
        result = await asyncio.to_thread(CliRunner().invoke, audit_cli.app, command, env=environment)
        assert result.exit_code == 0, result.output
    verifier = result.output.strip()
    verified = await asyncio.to_thread(CliRunner().invoke, audit_cli.app, ["verify", str(exported), "--key", verifier])
    assert verified.exit_code == 0 and "VERIFIED" in verified.output, verified.output
    assert CAPTION.encode() not in exported.read_bytes()  # the trail holds pseudonyms, never the caption
