"""The parts of a data-subject request: compliance's own records, and each service's over its
`SubjectDataService` RPCs (the shared contract in protos/limelight/privacy/v1)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import grpc
from limelight.compliance.v1 import privacy_pb2
from limelight.privacy.v1 import subject_data_pb2, subject_data_pb2_grpc

from libs.errors import Unavailable
from libs.kit.server import ServiceRuntime
from libs.privacy.subject_data import Erasure, RetentionException
from services.compliance.privacy.store import PrivacyStore
from services.compliance.privacy.usecases import SubjectDataSource

SERVICE = "services/compliance"


class ComplianceRecords:
    """What compliance holds about a subject: their data-subject requests (type, state, dates),
    whether a data key exists, and what its other areas hold (`areas`: consent's decisions).

    The audit trail is not exported: it holds pseudonyms only, no data about the subject that an
    export could return without the deployment's secret."""

    service = SERVICE

    def __init__(self, store: PrivacyStore, areas: Sequence[SubjectDataSource] = ()) -> None:
        self._store = store
        self._areas = areas

    async def export(self, subject: str) -> dict[str, Any]:
        user = subject.removeprefix("users/")
        requests = await asyncio.to_thread(self._store.requests, user, None, None, None, 1000)
        key = await asyncio.to_thread(self._store.data_key, subject)
        if key is None or key.shredded:
            return {}  # an erased subject: compliance holds nothing about them but pseudonyms
        sections: dict[str, Any] = {
            "data_subject_requests": [{"name": r.name, "type": r.type.value, "state": r.state.value,
                                       "receive_time": r.receive_time.isoformat(), "due_time": r.due_time.isoformat()}
                                      for r in requests],
            "data_key": {"create_time": key.create_time.isoformat()},
        }
        for area in self._areas:
            sections.update(await area.export(subject))
        return sections

    async def erase(self, subject: str) -> Erasure:
        steps = [Erasure("the subject's requests keep their type and dates as proof of the answer; "
                         "their details become unreadable with the data key")]
        steps += [await area.erase(subject) for area in self._areas]
        return Erasure("; ".join(step.summary for step in steps), tuple(kept for step in steps for kept in step.kept))


class ServiceSubjectData:
    """A service's part of a request, over the `SubjectDataService` it serves (the shared contract,
    limelight.privacy.v1)."""

    def __init__(self, service: str, channel: grpc.aio.Channel, *, timeout: float = 10.0) -> None:
        self.service = f"services/{service}"
        self._stub = subject_data_pb2_grpc.SubjectDataServiceStub(channel)
        self._timeout = timeout

    async def export(self, subject: str) -> dict[str, Any]:
        try:
            response = await self._stub.ExportSubjectData(
                subject_data_pb2.ExportSubjectDataRequest(subject=subject), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise self._unavailable(error) from error
        exported: dict[str, Any] = json.loads(response.export.json or "{}")
        return exported

    async def erase(self, subject: str) -> Erasure:
        try:
            response = await self._stub.EraseSubjectData(
                subject_data_pb2.EraseSubjectDataRequest(subject=subject), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise self._unavailable(error) from error
        return Erasure(response.erasure.summary, tuple(RetentionException(kept.data_category, kept.legal_basis)
                                                       for kept in response.erasure.retained))

    async def activities(self) -> list[privacy_pb2.ProcessingActivity]:
        """The service's record of processing (Art. 30), as its data map declares it."""
        try:
            response = await self._stub.DescribeProcessing(subject_data_pb2.DescribeProcessingRequest(),
                                                           timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            raise self._unavailable(error) from error
        return list(response.activities)

    def _unavailable(self, error: grpc.aio.AioRpcError) -> Unavailable:
        return Unavailable(f"{self.service} did not answer ({error.code().name}): {error.details()}",
                           reason="SOURCE_UNAVAILABLE", metadata={"service": self.service})


def service_sources(runtime: ServiceRuntime, services: Sequence[str]) -> list[ServiceSubjectData]:
    """The services a request reaches besides compliance (`LIMELIGHT_PRIVACY_SOURCES`); each
    serves the shared SubjectDataService."""
    return [ServiceSubjectData(name, runtime.clients.channel(name)) for name in services]
