"""Data keys from compliance's PersonalDataKeyService (the DataKeySource services use)."""

from __future__ import annotations

import os
from collections.abc import Mapping

import grpc
from limelight.compliance.v1 import privacy_pb2, privacy_pb2_grpc

from libs.kit.server import ServiceRuntime
from libs.privacy.fields import EphemeralDataKeys, PersonalData, SubjectErased
from libs.privacy.sealing import DataKey

# A shredded or unknown key is remembered this long, so a page of unreadable rows costs one call.
ABSENT_KEY_TTL_S = 5.0


class RemoteDataKeys:
    def __init__(self, stub: privacy_pb2_grpc.PersonalDataKeyServiceAsyncStub, *, timeout: float = 5.0) -> None:
        self._stub = stub
        self._timeout = timeout

    async def current_key(self, subject: str) -> tuple[DataKey, float]:
        try:
            response = await self._stub.GetDataKey(privacy_pb2.GetDataKeyRequest(subject=subject),
                                                   timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.FAILED_PRECONDITION:
                raise SubjectErased(f"{subject} was erased: no personal data may be stored for them",
                                    metadata={"subject": subject}) from error
            raise
        return DataKey(response.key_id, response.key), response.cache_ttl.ToTimedelta().total_seconds()

    async def key(self, subject: str, key_id: str) -> tuple[DataKey | None, float]:
        try:
            response = await self._stub.GetDataKey(privacy_pb2.GetDataKeyRequest(subject=subject, key_id=key_id),
                                                   timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND):
                return None, ABSENT_KEY_TTL_S
            raise
        return DataKey(response.key_id, response.key), response.cache_ttl.ToTimedelta().total_seconds()


# `LIMELIGHT_DATA_KEYS=ephemeral`: keys held in the process's memory, for a process run without
# compliance (a crash test, a benchmark); what it sealed is unreadable after it exits.
DATA_KEYS_SETTING = "LIMELIGHT_DATA_KEYS"


def personal_data_for(runtime: ServiceRuntime, environ: Mapping[str, str] = os.environ) -> PersonalData:
    """A service's `PersonalData`, with keys from compliance through the runtime's client (or, with
    `LIMELIGHT_DATA_KEYS=ephemeral`, from this process's memory)."""
    source = environ.get(DATA_KEYS_SETTING, "compliance")
    if source == "ephemeral":
        return PersonalData(EphemeralDataKeys())
    if source != "compliance":
        raise ValueError(f"{DATA_KEYS_SETTING} is 'compliance' (the default) or 'ephemeral', not {source!r}")
    return PersonalData(RemoteDataKeys(runtime.clients.stub("compliance", privacy_pb2_grpc.PersonalDataKeyServiceStub)))
