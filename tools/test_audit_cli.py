"""`limelight audit` against a real compliance server: query, export, collect checkpoints, verify offline."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import audit_pb2, audit_pb2_grpc
from typer.testing import CliRunner, Result

from libs.audit.protos import timestamp
from libs.audit.pseudonyms import Pseudonymizer
from libs.auth.principal import Role
from libs.auth.tokens import TokenClaims, mint_token, platform_signing_key
from libs.kit.server import RunningService, start_service
from services.compliance.audit.conftest import edit_database
from services.compliance.audit.store import AuditLogStore
from services.compliance.server import build
from tools.audit_cli import app


@pytest.fixture
async def compliance(tmp_path: Path) -> AsyncIterator[RunningService]:
    running = await start_service("compliance", build, port=0, data_root=tmp_path / "data")
    yield running
    await running.stop(grace=0)


def bearer(root: Path, subject: str, role: Role) -> str:
    return mint_token(platform_signing_key(root), TokenClaims(subject, frozenset({role})), ttl=dt.timedelta(minutes=5))


async def append(running: RunningService, events: int, subject_ref: str = "") -> int:
    """Log `events` gift events as a service would; returns the tree size once it is signed."""
    metadata = (("authorization", f"Bearer {bearer(running.runtime.data_root, 'services/gifts', Role.SERVICE)}"),)
    async with grpc.aio.insecure_channel(running.target) as channel:
        stub = audit_pb2_grpc.AuditServiceStub(channel)
        reply = await stub.AppendEvents(audit_pb2.AppendEventsRequest(events=[audit_pb2.AuditEvent(
            event_id=str(uuid.uuid4()), actor="users/alice", action="gifts.SendGift", resource=f"creators/bo/gifts/g{n}",
            outcome=audit_pb2.OUTCOME_SUCCEEDED, event_time=timestamp(dt.datetime.now(dt.UTC)),
            subject_ref=subject_ref) for n in range(events)]), metadata=metadata)
        size = reply.events[-1].leaf_index + 1
        while (await stub.GetCheckpoint(audit_pb2.GetCheckpointRequest())).checkpoint.tree_size < size:
            await asyncio.sleep(0.05)
    return size


async def cli(running: RunningService, *args: str, columns: int = 250) -> Result:
    """Run `limelight audit ...` as an officer, off the event loop the server runs on."""
    officer = bearer(running.runtime.data_root, "users/olga", Role.COMPLIANCE_OFFICER)
    return await asyncio.to_thread(CliRunner().invoke, app, [*args],
                                   env={"LIMELIGHT_TOKEN": officer, "LIMELIGHT_COMPLIANCE_TARGET": running.target,
                                        "COLUMNS": str(columns)})


async def test_an_officer_queries_exports_and_a_regulator_verifies(compliance: RunningService, tmp_path: Path) -> None:
    bob = Pseudonymizer.for_deployment(compliance.runtime.data_root).subject_ref("users/bob")
    await append(compliance, 3, subject_ref=bob)
    chain = tmp_path / "checkpoints.jsonl"
    assert (await cli(compliance, "checkpoint", "--chain", str(chain))).exit_code == 0
    await append(compliance, 4)
    verifier_key = (await cli(compliance, "key")).output.strip()

    found = await cli(compliance, "query", "--subject", "users/bob", "--json")
    assert found.exit_code == 0, found.output
    assert [json.loads(line)["subject_ref"] for line in found.output.splitlines()] == [bob] * 3
    table = await cli(compliance, "query", "--resource", "creators/bo/", "--limit", "2")
    assert "gifts.SendGift" in table.output and "2 event(s)" in table.output

    exported = tmp_path / "export.jsonl"
    result = await cli(compliance, "export", "--out", str(exported), "--held", str(chain))
    assert result.exit_code == 0, result.output
    verified = await cli(compliance, "verify", str(exported), "--key", verifier_key, "--held", str(chain))
    assert verified.exit_code == 0, verified.output
    # Every leaf of the checkpoint: the 7 gift events, and the queries if the checkpoint already covers them.
    exported_size = int(json.loads(exported.read_text().splitlines()[0])["checkpoint"].split("\n")[1])
    assert exported_size >= 7 and f"VERIFIED: {exported_size} event(s) intact" in verified.output

    assert (await cli(compliance, "checkpoint", "--chain", str(chain))).exit_code == 0
    assert (await cli(compliance, "verify", str(chain), "--key", verifier_key)).exit_code == 0

    lines = exported.read_text().splitlines()
    edited = json.loads(lines[2])
    edited["event"]["outcome"] = "rejected"
    lines[2] = json.dumps(edited)
    exported.write_text("\n".join(lines) + "\n")
    tampered = await cli(compliance, "verify", str(exported), "--key", verifier_key)
    assert tampered.exit_code == 1
    assert "changed" in tampered.output and edited["event"]["event_id"][:8] in tampered.output


async def test_an_event_deleted_from_the_store_is_reported_by_verify(compliance: RunningService, tmp_path: Path) -> None:
    await append(compliance, 5)
    store = AuditLogStore.open(compliance.runtime.data_root)  # a second handle on the service's store
    edit_database(store, ("DELETE FROM audit_event WHERE leaf_index = 3", ()))
    store.close()
    exported = tmp_path / "export.jsonl"
    assert (await cli(compliance, "export", "--out", str(exported), "--end-index", "5")).exit_code == 0
    verifier_key = (await cli(compliance, "key")).output.strip()
    result = await cli(compliance, "verify", str(exported), "--key", verifier_key)
    assert result.exit_code == 1
    assert "deleted" in result.output and "no record" in result.output


async def test_a_file_that_is_not_evidence_cannot_be_verified(tmp_path: Path) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_text("hello\n")
    key = "limelight.local/audit+01234567+AQ" + "A" * 42 + "="
    result = await asyncio.to_thread(CliRunner().invoke, app, ["verify", str(garbage), "--key", key])
    assert result.exit_code == 2


async def exported_and_key(running: RunningService, tmp_path: Path, *options: str) -> tuple[Path, str]:
    exported = tmp_path / "export.jsonl"
    result = await cli(running, "export", "--out", str(exported), *options)
    assert result.exit_code == 0, result.output
    return exported, (await cli(running, "key")).output.strip()


async def test_verify_never_cuts_an_event_id_and_speaks_json(compliance: RunningService, tmp_path: Path) -> None:
    await append(compliance, 4)
    exported, verifier_key = await exported_and_key(compliance, tmp_path, "--end-index", "4")
    lines = exported.read_text().splitlines()
    edited = json.loads(lines[2])
    edited["event"]["outcome"] = "rejected"
    lines[2] = json.dumps(edited)
    exported.write_text("\n".join(lines) + "\n")
    event_id = edited["event"]["event_id"]

    narrow = await cli(compliance, "verify", str(exported), "--key", verifier_key, columns=40)
    assert narrow.exit_code == 1 and event_id in narrow.output.replace("\n", "")
    assert any(event_id in line for line in narrow.output.splitlines()), "the id was broken across lines"
    as_json = await cli(compliance, "verify", str(exported), "--key", verifier_key, "--json", columns=40)
    assert as_json.exit_code == 1
    report = json.loads(as_json.output)
    assert report["verified"] is False and report["complete"] is True
    assert report["findings"] == [{"kind": "changed", "leaf_index": 1, "event_id": event_id,
                                   "detail": "differs from the event logged at leaf 1"}]


async def test_require_complete_fails_on_a_cut_export_whose_range_claim_was_removed(
    compliance: RunningService, tmp_path: Path
) -> None:
    await append(compliance, 5)
    exported, verifier_key = await exported_and_key(compliance, tmp_path, "--end-index", "5", "--tree-size", "5")
    header, *entries = exported.read_text().splitlines()
    del entries[3]
    exported.write_text("\n".join([json.dumps({**json.loads(header), "complete_range": None}), *entries]) + "\n")

    lenient = await cli(compliance, "verify", str(exported), "--key", verifier_key)
    assert lenient.exit_code == 0 and "partial: leaves 3 of the checkpoint's 5" in lenient.output
    strict = await cli(compliance, "verify", str(exported), "--key", verifier_key, "--require-complete")
    assert strict.exit_code == 1 and "INCOMPLETE: leaves 3 " in strict.output
    report = json.loads((await cli(compliance, "verify", str(exported), "--key", verifier_key, "--json")).output)
    assert report["complete"] is False and report["absent_leaves"] == [[3, 4]]


async def test_require_complete_fails_on_a_filtered_export(compliance: RunningService, tmp_path: Path) -> None:
    bob = Pseudonymizer.for_deployment(compliance.runtime.data_root).subject_ref("users/bob")
    await append(compliance, 2, subject_ref=bob)
    await append(compliance, 3)
    exported, verifier_key = await exported_and_key(compliance, tmp_path, "--subject", "users/bob")
    assert (await cli(compliance, "verify", str(exported), "--key", verifier_key)).exit_code == 0
    strict = await cli(compliance, "verify", str(exported), "--key", verifier_key, "--require-complete")
    assert strict.exit_code == 1 and "cannot prove that no event was removed" in strict.output
