"""kill -9 of the affiliate process while clicks pour in, then a restart: acknowledged means durable, once.

Affiliate runs as a real subprocess (`run_service_process`, as `limelight serve affiliate` does)
beside a real compliance server. Clicks are recorded until the process is killed with SIGKILL;
after a restart on the same data directory every acknowledged click is there with its answer,
every click sent (acknowledged or not) retried under its request id counts once, and each paid
click has exactly one CPC commission.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import uuid
from pathlib import Path

import grpc
from limelight.affiliate.v1 import commissions_pb2_grpc, links_pb2, links_pb2_grpc, programs_pb2_grpc
from limelight.compliance.v1 import consent_pb2_grpc

from libs.kit.server import start_service
from libs.kit.testing import ServiceProcess
from libs.ports import reserve_port
from libs.timestamps import to_timestamp
from services.affiliate.conftest import BROWSER, Affiliate, fresh
from services.compliance.server import build as build_compliance

USERS = 24
LOAD_SECONDS = 1.0


def _click_request(token: str, index: int, at: dt.datetime) -> links_pb2.RecordClickRequest:
    return links_pb2.RecordClickRequest(
        request_id=str(uuid.uuid4()), token=token, user=f"users/crash-{index % USERS}", user_agent=BROWSER,
        client_ip=f"198.51.{index >> 8 & 255}.{index & 255}", country_code="DE", click_time=to_timestamp(at))


async def test_kill_9_under_clicks_loses_no_acknowledged_click_and_pays_each_once(tmp_path: Path) -> None:
    compliance = await start_service("compliance", build_compliance, port=0, data_root=tmp_path)
    process = ServiceProcess("affiliate", tmp_path, reserve_port(), {"LIMELIGHT_COMPLIANCE_TARGET": compliance.target})
    process.start()
    try:
        await process.wait_serving()
        channel = grpc.aio.insecure_channel(process.target)
        consent_channel = grpc.aio.insecure_channel(compliance.target)
        # The conftest's helpers over the subprocess (it has no in-process service object).
        helper = Affiliate(tmp_path, compliance, compliance, None,  # type: ignore[arg-type]
                           programs_pb2_grpc.ProgramServiceStub(channel), links_pb2_grpc.LinkServiceStub(channel),
                           commissions_pb2_grpc.CommissionServiceStub(channel),
                           consent_pb2_grpc.ConsentServiceStub(consent_channel), [channel, consent_channel])
        program = await helper.program(fresh("m"), cpc=3, cap=1_000_000)
        links = [await helper.link(fresh("c"), program) for _ in range(4)]
        for user in range(USERS):
            await helper.grant_tracking(f"crash-{user}")
        at = dt.datetime.now(dt.UTC)
        sent: list[links_pb2.RecordClickRequest] = []
        acknowledged: dict[str, links_pb2.Click] = {}

        async def clicker(worker: int) -> None:
            index = worker
            while True:
                request = _click_request(links[index % len(links)].token, index, at)
                sent.append(request)
                try:
                    acknowledged[request.request_id] = (await helper.links.RecordClick(
                        request, metadata=helper.shop(), timeout=5)).click
                except grpc.aio.AioRpcError:
                    return
                index += 16

        workers = [asyncio.create_task(clicker(worker)) for worker in range(16)]
        await asyncio.sleep(LOAD_SECONDS)
        process.kill()
        await asyncio.gather(*workers)
        await channel.close()
        assert acknowledged, "clicks were acknowledged before the kill"

        process.start()
        await process.wait_serving()
        async with grpc.aio.insecure_channel(process.target) as again:
            stub = links_pb2_grpc.LinkServiceStub(again)
            for request in sent:
                replay = (await stub.RecordClick(request, metadata=helper.shop(), timeout=10)).click
                first = acknowledged.get(request.request_id)
                if first is not None:
                    assert (replay.name, replay.counted, replay.cpc_earned_minor) == \
                        (first.name, first.counted, first.cpc_earned_minor)
        await consent_channel.close()
        database = sqlite3.connect(tmp_path / "affiliate" / "affiliate.db")
        clicks = database.execute("SELECT COUNT(*) FROM clicks").fetchone()[0]
        paid = database.execute("SELECT COUNT(*), COALESCE(SUM(cpc_earned_minor), 0) FROM clicks"
                                " WHERE cpc_earned_minor > 0").fetchone()
        commissions = database.execute("SELECT COUNT(*), COALESCE(SUM(amount_minor), 0) FROM commissions"
                                       " WHERE kind = 'CLICK'").fetchone()
        days = database.execute("SELECT COALESCE(SUM(earned_minor), 0) FROM cpc_days").fetchone()[0]
        database.close()
        assert clicks == len(sent), "every click sent is recorded once, acknowledged or not"
        assert tuple(commissions) == tuple(paid) and days == paid[1], "each paid click has one CPC commission"
    finally:
        process.stop()
        await compliance.stop(grace=0)
