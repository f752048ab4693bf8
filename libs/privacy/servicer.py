"""The shared `limelight.privacy.v1.SubjectDataService`, served by every service that holds
personal data over its own `SubjectDataHolder` and data map."""

from __future__ import annotations

import json

import grpc
from limelight.privacy.v1 import subject_data_pb2, subject_data_pb2_grpc

from libs.auth.principal import Role
from libs.kit.access import method_paths
from libs.privacy.data_map import DataMap
from libs.privacy.records import activities_out
from libs.privacy.subject_data import SubjectDataHolder

SUBJECT_DATA_SERVICE = "limelight.privacy.v1.SubjectDataService"

# What a service holds about a person, decrypted: for compliance answering their request only.
SUBJECT_DATA_ACCESS = method_paths(SUBJECT_DATA_SERVICE, {
    "ExportSubjectData": frozenset({Role.SERVICE}),
    "EraseSubjectData": frozenset({Role.SERVICE}),
    "DescribeProcessing": frozenset({Role.SERVICE}),
})


def user_id_of(subject: str) -> str:
    """`ada` of `users/ada` (the request's pattern has been validated by the kit)."""
    return subject.removeprefix("users/")


class SubjectDataServicer(subject_data_pb2_grpc.SubjectDataServiceServicer):
    def __init__(self, data_map: DataMap, holder: SubjectDataHolder) -> None:
        self._data_map = data_map
        self._holder = holder

    async def ExportSubjectData(self, request: subject_data_pb2.ExportSubjectDataRequest,
                                context: grpc.aio.ServicerContext[object, object],
                                ) -> subject_data_pb2.ExportSubjectDataResponse:
        exported = await self._holder.export(user_id_of(request.subject))
        return subject_data_pb2.ExportSubjectDataResponse(export=subject_data_pb2.SubjectDataExport(
            service=self._data_map.service, json=json.dumps(exported, ensure_ascii=False, sort_keys=True)))

    async def EraseSubjectData(self, request: subject_data_pb2.EraseSubjectDataRequest,
                               context: grpc.aio.ServicerContext[object, object],
                               ) -> subject_data_pb2.EraseSubjectDataResponse:
        erasure = await self._holder.erase(user_id_of(request.subject))
        return subject_data_pb2.EraseSubjectDataResponse(erasure=subject_data_pb2.SubjectErasure(
            service=self._data_map.service, summary=erasure.summary,
            retained=[subject_data_pb2.RetainedData(data_category=kept.data_category, legal_basis=kept.legal_basis)
                      for kept in erasure.kept]))

    async def DescribeProcessing(self, request: subject_data_pb2.DescribeProcessingRequest,
                                 context: grpc.aio.ServicerContext[object, object],
                                 ) -> subject_data_pb2.DescribeProcessingResponse:
        return subject_data_pb2.DescribeProcessingResponse(activities=activities_out(self._data_map))
