"""The parts of a data-subject request: compliance's own records, and each service's over its
`SubjectDataService` RPCs (the shared contract in protos/limelight/privacy/v1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

import grpc
from limelight.compliance.v1 import privacy_pb2
from limelight.gifts.v1 import subject_data_pb2, subject_data_pb2_grpc
from limelight.ingest.v1 import subject_data_pb2 as ingest_subject_data_pb2
from limelight.ingest.v1 import subject_data_pb2_grpc as ingest_subject_data_pb2_grpc

from libs.errors import Unavailable
from libs.kit.server import ServiceRuntime
from services.compliance.privacy.model import RetentionException
from services.compliance.privacy.store import SqlitePrivacyStore
from services.compliance.privacy.usecases import Erasure

SERVICE = "services/compliance"


class ComplianceRecords:
    """The subject's data-subject requests (type, state, dates) and whether a data key exists.

    The audit trail is not exported: it holds pseudonyms only, no data about the subject that an
    export could return without the deployment's secret."""

    service = SERVICE

    def __init__(self, store: SqlitePrivacyStore) -> None:
        self._store = store

    async def export(self, subject: str) -> dict[str, Any]:
        user = subject.removeprefix("users/")
        requests = await asyncio.to_thread(self._store.requests, user, None, None, None, 1000)
        key = await asyncio.to_thread(self._store.data_key, subject)
        if key is None or key.shredded:
            return {}  # an erased subject: compliance holds nothing about them but pseudonyms
        return {
            "data_subject_requests": [{"name": r.name, "type": r.type.value, "state": r.state.value,
                                       "receive_time": r.receive_time.isoformat(), "due_time": r.due_time.isoformat()}
                                      for r in requests],
            "data_key": {"create_time": key.create_time.isoformat()},
        }

    async def erase(self, subject: str) -> Erasure:
        return Erasure("the subject's requests keep their type and dates as proof of the answer; "
                       "their details become unreadable with the data key")


class ServiceSubjectData:
    """A service's part of a request, over its `SubjectDataService` (the shared contract,
    limelight.privacy.v1): gifts and ingest today; any service that declares the same two RPCs."""

    def __init__(self, service: str, stub: SubjectDataStub, *, timeout: float = 10.0) -> None:
        self.service = f"services/{service}"
        self._stub = stub
        self._timeout = timeout

    async def export(self, subject: str) -> dict[str, Any]:
        try:
            response = await self._stub.ExportSubjectData(self._stub.export_request(subject), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise self._unavailable(error) from error
        exported: dict[str, Any] = json.loads(response.export.json or "{}")
        return exported

    async def erase(self, subject: str) -> Erasure:
        try:
            response = await self._stub.EraseSubjectData(self._stub.erase_request(subject), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise self._unavailable(error) from error
        return Erasure(response.erasure.summary, tuple(RetentionException(kept.data_category, kept.legal_basis)
                                                       for kept in response.erasure.retained))


    async def activities(self) -> list[privacy_pb2.ProcessingActivity]:
        """The service's record of processing (Art. 30), as its data map declares it."""
        try:
            response = await self._stub.DescribeProcessing(self._stub.describe_request(), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise self._unavailable(error) from error
        return list(response.activities)

    def _unavailable(self, error: grpc.aio.AioRpcError) -> Unavailable:
        return Unavailable(f"{self.service} did not answer ({error.code().name}): {error.details()}",
                           reason="SOURCE_UNAVAILABLE", metadata={"service": self.service})


class SubjectDataStub(Protocol):
    def export_request(self, subject: str) -> Any: ...
    def erase_request(self, subject: str) -> Any: ...
    def describe_request(self) -> Any: ...
    def ExportSubjectData(self, request: Any, *, timeout: float) -> Awaitable[Any]: ...  # noqa: N802 (the RPC's name)
    def EraseSubjectData(self, request: Any, *, timeout: float) -> Awaitable[Any]: ...  # noqa: N802
    def DescribeProcessing(self, request: Any, *, timeout: float) -> Awaitable[Any]: ...  # noqa: N802


class GiftsSubjectData:
    """Gifts' SubjectDataService, with its own request messages."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        stub = subject_data_pb2_grpc.SubjectDataServiceStub(channel)
        self.ExportSubjectData = stub.ExportSubjectData
        self.EraseSubjectData = stub.EraseSubjectData
        self.DescribeProcessing = stub.DescribeProcessing

    def describe_request(self) -> subject_data_pb2.DescribeProcessingRequest:
        return subject_data_pb2.DescribeProcessingRequest()

    def export_request(self, subject: str) -> subject_data_pb2.ExportSubjectDataRequest:
        return subject_data_pb2.ExportSubjectDataRequest(subject=subject)

    def erase_request(self, subject: str) -> subject_data_pb2.EraseSubjectDataRequest:
        return subject_data_pb2.EraseSubjectDataRequest(subject=subject)


class IngestSubjectData:
    """Ingest's SubjectDataService, with its own request messages."""

    def __init__(self, channel: grpc.aio.Channel) -> None:
        stub = ingest_subject_data_pb2_grpc.SubjectDataServiceStub(channel)
        self.ExportSubjectData = stub.ExportSubjectData
        self.EraseSubjectData = stub.EraseSubjectData
        self.DescribeProcessing = stub.DescribeProcessing

    def describe_request(self) -> ingest_subject_data_pb2.DescribeProcessingRequest:
        return ingest_subject_data_pb2.DescribeProcessingRequest()

    def export_request(self, subject: str) -> ingest_subject_data_pb2.ExportSubjectDataRequest:
        return ingest_subject_data_pb2.ExportSubjectDataRequest(subject=subject)

    def erase_request(self, subject: str) -> ingest_subject_data_pb2.EraseSubjectDataRequest:
        return ingest_subject_data_pb2.EraseSubjectDataRequest(subject=subject)


def service_sources(runtime: ServiceRuntime, services: Sequence[str]) -> list[ServiceSubjectData]:
    """The services a request reaches besides compliance (`LIMELIGHT_PRIVACY_SOURCES`)."""
    adapters: dict[str, Callable[[grpc.aio.Channel], SubjectDataStub]] = {
        "gifts": GiftsSubjectData, "ingest": IngestSubjectData}
    unknown = sorted(set(services) - set(adapters))
    if unknown:
        raise ValueError(f"no data-subject adapter for {unknown}; known: {sorted(adapters)}")
    return [ServiceSubjectData(name, adapters[name](runtime.clients.channel(name))) for name in services]
