"""Data-subject requests through a real compliance server: deadlines, who may ask, exports, erasure."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, TypeAlias

import grpc
import pytest
from limelight.compliance.v1 import privacy_pb2, privacy_pb2_grpc

from libs.auth.principal import Role
from libs.kit.server import RunningService
from services.compliance.privacy.model import months_after
from services.compliance.privacy.servicer import PrivacyArea
from services.compliance.privacy.test_servicer import bearer

Stub: TypeAlias = "privacy_pb2_grpc.DataSubjectServiceAsyncStub"
ACCESS = privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_ACCESS
ERASURE = privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_ERASURE
RECTIFICATION = privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_RECTIFICATION
COMPLETED = privacy_pb2.DATA_SUBJECT_REQUEST_STATE_COMPLETED


@pytest.fixture
async def stub(privacy_server: tuple[RunningService, PrivacyArea]) -> AsyncIterator[Stub]:
    async with grpc.aio.insecure_channel(privacy_server[0].target) as channel:
        yield privacy_pb2_grpc.DataSubjectServiceStub(channel)


def create(kind: int, details: str = "", user: str = "ada", request_id: str = "") -> \
        privacy_pb2.CreateDataSubjectRequestRequest:
    return privacy_pb2.CreateDataSubjectRequestRequest(parent=f"users/{user}", request_id=request_id or str(uuid.uuid4()),
                                                       type=kind, details=details)  # type: ignore[arg-type]


async def download(stub: Stub, name: str, metadata: tuple[tuple[str, str], ...]) -> dict[str, Any]:
    data, digest = b"", ""
    async for chunk in stub.DownloadDataExport(privacy_pb2.DownloadDataExportRequest(name=name), metadata=metadata):
        data += chunk.data
        digest = chunk.sha256 or digest
    assert hashlib.sha256(data).hexdigest() == digest
    parsed: dict[str, Any] = json.loads(data)
    return parsed


def test_the_deadline_is_one_calendar_month_and_never_overflows_a_short_month() -> None:
    assert months_after(dt.datetime(2026, 1, 31, 9, tzinfo=dt.UTC), 1) == dt.datetime(2026, 2, 28, 9, tzinfo=dt.UTC)
    assert months_after(dt.datetime(2026, 11, 15, tzinfo=dt.UTC), 3) == dt.datetime(2027, 2, 15, tzinfo=dt.UTC)


async def test_a_subject_gets_their_export_with_an_index_of_sources(stub: Stub, tmp_path: Path) -> None:
    ada = bearer(tmp_path, "users/ada", Role.VIEWER)
    created = (await stub.CreateDataSubjectRequest(create(ACCESS, "everything you hold"), metadata=ada)
               ).data_subject_request
    assert created.state == COMPLETED and created.export_size_bytes > 0
    assert created.due_time.ToDatetime(dt.UTC) == months_after(created.receive_time.ToDatetime(dt.UTC), 1)
    archive = await download(stub, created.name, ada)
    assert archive["subject"] == "users/ada"
    assert [entry["source"] for entry in archive["index"]] == ["services/compliance"]
    fetched = (await stub.GetDataSubjectRequest(privacy_pb2.GetDataSubjectRequestRequest(name=created.name),
                                                metadata=ada)).data_subject_request
    assert fetched.details == "everything you hold"


async def test_nobody_else_sees_or_opens_a_subjects_request(stub: Stub, tmp_path: Path) -> None:
    created = (await stub.CreateDataSubjectRequest(create(ACCESS), metadata=bearer(tmp_path, "users/ada", Role.VIEWER))
               ).data_subject_request
    bob = bearer(tmp_path, "users/bob", Role.VIEWER)
    for call in (stub.GetDataSubjectRequest(privacy_pb2.GetDataSubjectRequestRequest(name=created.name), metadata=bob),
                 download(stub, created.name, bob)):
        with pytest.raises(grpc.aio.AioRpcError) as hidden:
            await call
        assert hidden.value.code() is grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.CreateDataSubjectRequest(create(ERASURE), metadata=bob)
    assert refused.value.code() is grpc.StatusCode.PERMISSION_DENIED
    officer = bearer(tmp_path, "users/olga", Role.COMPLIANCE_OFFICER)
    listed = await stub.ListDataSubjectRequests(privacy_pb2.ListDataSubjectRequestsRequest(parent="users/-"),
                                                metadata=officer)
    assert [r.name for r in listed.data_subject_requests] == [created.name]
    with pytest.raises(grpc.aio.AioRpcError) as everyone:
        await stub.ListDataSubjectRequests(privacy_pb2.ListDataSubjectRequestsRequest(parent="users/-"), metadata=bob)
    assert everyone.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_a_retry_opens_no_second_request_and_a_reused_id_is_refused(stub: Stub, tmp_path: Path) -> None:
    ada, request_id = bearer(tmp_path, "users/ada", Role.VIEWER), str(uuid.uuid4())
    first = await stub.CreateDataSubjectRequest(create(RECTIFICATION, "my name is wrong", request_id=request_id),
                                                metadata=ada)
    again = await stub.CreateDataSubjectRequest(create(RECTIFICATION, "my name is wrong", request_id=request_id),
                                                metadata=ada)
    assert again.data_subject_request.name == first.data_subject_request.name
    with pytest.raises(grpc.aio.AioRpcError) as reused:
        await stub.CreateDataSubjectRequest(create(ACCESS, request_id=request_id), metadata=ada)
    assert reused.value.code() is grpc.StatusCode.ALREADY_EXISTS


async def test_an_officer_extends_once_by_at_most_two_months_with_a_reason(stub: Stub, tmp_path: Path) -> None:
    ada, officer = bearer(tmp_path, "users/ada", Role.VIEWER), bearer(tmp_path, "users/olga", Role.COMPLIANCE_OFFICER)
    opened = (await stub.CreateDataSubjectRequest(create(RECTIFICATION, "fix my birth date"), metadata=ada)
              ).data_subject_request
    extend = privacy_pb2.ExtendDataSubjectRequestRequest(name=opened.name, extension_months=2,
                                                         reason="many linked records to check")
    with pytest.raises(grpc.aio.AioRpcError) as subject_tries:
        await stub.ExtendDataSubjectRequest(extend, metadata=ada)
    assert subject_tries.value.code() is grpc.StatusCode.PERMISSION_DENIED
    extended = (await stub.ExtendDataSubjectRequest(extend, metadata=officer)).data_subject_request
    assert extended.due_time.ToDatetime(dt.UTC) == months_after(opened.due_time.ToDatetime(dt.UTC), 2)
    assert extended.extension_reason == "many linked records to check"
    with pytest.raises(grpc.aio.AioRpcError) as twice:
        await stub.ExtendDataSubjectRequest(extend, metadata=officer)
    assert twice.value.code() is grpc.StatusCode.FAILED_PRECONDITION


async def test_erasure_shreds_the_key_names_what_is_kept_and_leaves_an_empty_export(
    stub: Stub, tmp_path: Path, privacy_server: tuple[RunningService, PrivacyArea],
) -> None:
    ada = bearer(tmp_path, "users/ada", Role.VIEWER)
    first = (await stub.CreateDataSubjectRequest(create(RECTIFICATION, "I live at Rua Augusta 3"), metadata=ada)
             ).data_subject_request
    erased = (await stub.CreateDataSubjectRequest(create(ERASURE, "forget me"), metadata=ada)).data_subject_request
    assert erased.state == COMPLETED
    assert [p.summary for p in erased.progress][-1] == "data key destroyed"
    assert [kept.data_category for kept in erased.retention_exceptions] == ["compliance.audit_trail"]
    after = (await stub.CreateDataSubjectRequest(create(ACCESS), metadata=ada)).data_subject_request
    archive = await download(stub, after.name, ada)
    assert archive["sources"] == {"services/compliance": {}}
    old = (await stub.GetDataSubjectRequest(privacy_pb2.GetDataSubjectRequestRequest(name=first.name), metadata=ada)
           ).data_subject_request
    assert old.details == "" and old.name == first.name  # the proof of the request stays; its words are gone
    every_byte = b"".join(path.read_bytes() for path in (tmp_path / "compliance").glob("privacy.db*"))
    assert b"Rua Augusta" not in every_byte and b"forget me" not in every_byte
    outbox = privacy_server[1].store.audit_outbox()
    actions = [traced.event.action for traced in outbox.pending(100)]
    assert {"compliance.CreateDataSubjectRequest", "compliance.EraseSubjectData", "compliance.ShredDataKey",
            "compliance.ExportSubjectData"} <= set(actions)


async def test_the_record_of_processing_is_public(stub: Stub) -> None:
    listed = await stub.ListProcessingActivities(privacy_pb2.ListProcessingActivitiesRequest())
    assert {"compliance.data_keys", "compliance.data_subject_requests"} <= {a.activity_id for a in listed.activities}
