"""Ranking's part of a data-subject request, through the shared limelight.privacy.v1.SubjectDataService."""

from __future__ import annotations

import json

import grpc
import pytest
from limelight.privacy.v1 import subject_data_pb2, subject_data_pb2_grpc
from limelight.ranking.v1 import feed_pb2, follows_pb2, signals_pb2

from services.ranking.conftest import RankingHarness, signal_of


async def test_export_opens_report_details_and_erasure_forgets_the_viewer(harness: RankingHarness) -> None:
    await harness.register("bea", "v1")
    await harness.register("cem", "v1")
    report = signal_of("creators/bea/videos/v1", signals_pb2.SIGNAL_TYPE_REPORT)
    report.report_reason = signals_pb2.REPORT_REASON_OTHER
    report.report_details = "this copies my video"
    await harness.signals.RecordSignals(signals_pb2.RecordSignalsRequest(viewer="users/ana", signals=[report]),
                                        metadata=harness.auth("users/ana"))
    await harness.follows.FollowCreator(follows_pb2.FollowCreatorRequest(follower="users/ana", creator="creators/bea"),
                                        metadata=harness.auth("users/ana"))
    await harness.feed.GetFeed(feed_pb2.GetFeedRequest(viewer="users/ana"), metadata=harness.auth("users/ana"))
    stub = subject_data_pb2_grpc.SubjectDataServiceStub(harness.channel)
    exported = await stub.ExportSubjectData(subject_data_pb2.ExportSubjectDataRequest(subject="users/ana"),
                                            metadata=harness.service_auth("compliance"))
    sections = json.loads(exported.export.json)
    assert exported.export.service == "services/ranking"
    assert [s["report_details"] for s in sections["signals"]] == ["this copies my video"]
    assert [f["creator"] for f in sections["follows"]] == ["bea"] and sections["feed_items"]
    with harness.service.store._database.reading() as connection:
        stored = b"".join(repr(tuple(row)).encode() for row in connection.execute("SELECT * FROM signals"))
    files = (harness.root / "ranking").glob("ranking.db*")  # SQLite's pages, free ones included
    assert b"this copies my video" not in stored + b"".join(path.read_bytes() for path in files)
    assert stored  # the report is there, sealed

    erased = await stub.EraseSubjectData(subject_data_pb2.EraseSubjectDataRequest(subject="users/ana"),
                                         metadata=harness.service_auth("compliance"))
    assert "1 signals" in erased.erasure.summary and "1 follows" in erased.erasure.summary
    after = json.loads((await stub.ExportSubjectData(subject_data_pb2.ExportSubjectDataRequest(
        subject="users/ana"), metadata=harness.service_auth("compliance"))).export.json)
    assert all(not records for records in after.values())
    stats = await harness.follows.GetFollowStats(follows_pb2.GetFollowStatsRequest(name="creators/bea/followStats"),
                                                 metadata=harness.auth("users/bea"))
    assert stats.stats.follower_count == 0


async def test_only_services_reach_subject_data(harness: RankingHarness) -> None:
    stub = subject_data_pb2_grpc.SubjectDataServiceStub(harness.channel)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.ExportSubjectData(subject_data_pb2.ExportSubjectDataRequest(subject="users/ana"),
                                     metadata=harness.auth("users/ana"))
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
