"""kill -9 the compliance service under load: every acknowledged event survives exactly once,
and the restarted log is consistent with every checkpoint published before the crash."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime as dt
import io
import json
import signal
import subprocess
import uuid
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc

from libs.audit.evidence import ExportHeader, ExportLine, read_export, write_export
from libs.audit.protos import timestamp
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.ports import reserve_port
from libs.tlog.checkpoint import open_checkpoint
from libs.tlog.export import verify_export
from libs.tlog.note import NoteVerifier
from libs.tlog.proofs import verify_consistency
from tools.supervisor import start_service_process

pytestmark = pytest.mark.timeout(120)

WRITERS = 32
BATCH = 8


def bearer(root: Path, subject: str, role: Role) -> tuple[tuple[str, str], ...]:
    token = mint_token(platform_signing_key(root), TokenClaims(subject, frozenset({role})), ttl=dt.timedelta(minutes=5))
    return (("authorization", f"Bearer {token}"),)


async def append_until_killed(root: Path, port: int, victim: subprocess.Popen[str]) -> tuple[list[str], list[str]]:
    """Writers append until the service dies under them; returns (acknowledged ids, signed checkpoints).

    The kill comes once the load is going and several checkpoints have been published
    under it, whenever that is: the test waits on that condition, not on a clock.
    """
    acknowledged: list[str] = []
    checkpoints: list[str] = []
    sizes: set[int] = set()
    busy = asyncio.Event()
    metadata = bearer(root, "services/gifts", Role.SERVICE)

    def note_progress() -> None:
        if len(acknowledged) >= 1000 and len(sizes) >= 3:
            busy.set()

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)

        async def write() -> None:
            while True:
                events = [audit_pb2.AuditEvent(
                    event_id=str(uuid.uuid4()), actor="services/gifts", action="gifts.SendGift",
                    resource="creators/bo", outcome=audit_pb2.OUTCOME_SUCCEEDED,
                    event_time=timestamp(dt.datetime.now(dt.UTC))) for _ in range(BATCH)]
                try:
                    await stub.AppendEvents(audit_pb2.AppendEventsRequest(events=events), metadata=metadata, timeout=5)
                except grpc.aio.AioRpcError:
                    return  # the service is gone: this batch was never acknowledged
                acknowledged.extend(event.event_id for event in events)
                note_progress()

        async def watch() -> None:
            while True:
                try:
                    reply = await stub.GetCheckpoint(audit_pb2.GetCheckpointRequest(), timeout=5)
                except grpc.aio.AioRpcError:
                    return
                checkpoints.append(reply.checkpoint.signed_note)
                sizes.add(reply.checkpoint.tree_size)
                note_progress()
                await asyncio.sleep(0.05)  # how often to look, not an ordering

        async def kill_when_busy() -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(busy.wait(), timeout=60)
            victim.send_signal(signal.SIGKILL)  # either way, so a stalled run fails instead of hanging
            assert busy.is_set(), "the load never got going"

        await asyncio.gather(kill_when_busy(), watch(), *(write() for _ in range(WRITERS)))
    return acknowledged, checkpoints


def test_acknowledged_appends_survive_kill_9_and_history_stays_consistent(tmp_path: Path) -> None:
    port = reserve_port()
    victim = start_service_process("compliance", tmp_path, port)
    acknowledged, published = asyncio.run(append_until_killed(tmp_path, port, victim))
    victim.wait()
    assert victim.returncode == -signal.SIGKILL

    restarted = start_service_process("compliance", tmp_path, port)
    try:
        asyncio.run(check_after_restart(tmp_path, port, acknowledged, published))
    finally:
        restarted.send_signal(signal.SIGTERM)
        restarted.wait(timeout=30)


async def check_after_restart(root: Path, port: int, acknowledged: list[str], published: list[str]) -> None:
    officer = bearer(root, "users/olga", Role.COMPLIANCE_OFFICER)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        verifier = NoteVerifier.from_key_string(
            (await stub.GetPublicKey(audit_pb2.GetPublicKeyRequest())).verifier_key)
        parts = [part async for part in stub.ExportEvents(audit_pb2.ExportEventsRequest(), metadata=officer)]
        header, exported = parts[0].header, [part.event for part in parts[1:]]
        after = open_checkpoint(header.checkpoint.signed_note, [verifier])

        logged = collections.Counter(json.loads(event.leaf_data)["event_id"] for event in exported)
        assert all(logged[event_id] == 1 for event_id in acknowledged), "an acknowledged event is missing"
        assert max(logged.values()) == 1, "an event was logged twice"

        before = [open_checkpoint(note, [verifier]) for note in published]
        assert len({checkpoint.tree_size for checkpoint in before}) >= 3, "too few checkpoints before the crash"
        proofs: dict[int, list[bytes]] = {}
        for checkpoint in before:
            if 0 < checkpoint.tree_size:
                reply = await stub.GetConsistencyProof(audit_pb2.GetConsistencyProofRequest(
                    first_size=checkpoint.tree_size, second_size=after.tree_size))
                proofs[checkpoint.tree_size] = list(reply.hashes)
                verify_consistency(checkpoint.tree_size, after.tree_size, checkpoint.root_hash, after.root_hash,
                                   proofs[checkpoint.tree_size])

    # And the whole restarted log verifies offline, leaf by leaf, against every checkpoint seen before.
    export_file = io.StringIO()
    write_export(export_file, ExportHeader(header.checkpoint.signed_note, (0, after.tree_size), proofs),
                 (ExportLine(e.leaf_index, json.loads(e.leaf_data), e.logged_leaf_hash, e.inclusion_proof)
                  for e in exported))
    export_file.seek(0)
    report = verify_export(read_export(export_file), [verifier], held_checkpoints=published)
    assert report.findings == () and report.intact_entries == after.tree_size
