"""Privacy's domain values to and from limelight.compliance.v1 privacy messages."""

from __future__ import annotations

import datetime as dt

from limelight.compliance.v1 import privacy_pb2

from libs.errors import InvalidArgument
from libs.pagination import PageTokens
from libs.privacy.sealing import DataKey
from libs.resource_names import ResourcePattern
from libs.timestamps import to_timestamp
from services.compliance.privacy.model import DataSubjectRequest, RequestState, RequestType
from services.compliance.privacy.usecases import NewRequest


def data_key_out(key: DataKey, cache_ttl: dt.timedelta) -> privacy_pb2.GetDataKeyResponse:
    response = privacy_pb2.GetDataKeyResponse(key_id=key.key_id, key=key.material)
    response.cache_ttl.FromTimedelta(cache_ttl)
    return response


REQUEST = ResourcePattern("users/{user}/dataSubjectRequests/{data_subject_request}")
USER = ResourcePattern("users/{user}")
REQUEST_PAGES = PageTokens("compliance.ListDataSubjectRequests")
ACTIVITY_PAGES = PageTokens("compliance.ListProcessingActivities")

_TYPES = {
    privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_ACCESS: RequestType.ACCESS,
    privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_PORTABILITY: RequestType.PORTABILITY,
    privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_ERASURE: RequestType.ERASURE,
    privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_RECTIFICATION: RequestType.RECTIFICATION,
    privacy_pb2.DATA_SUBJECT_REQUEST_TYPE_AUTOMATED_DECISION_REVIEW: RequestType.AUTOMATED_DECISION_REVIEW,
}
_TYPES_OUT = {domain: proto for proto, domain in _TYPES.items()}
_STATES = {
    RequestState.RECEIVED: privacy_pb2.DATA_SUBJECT_REQUEST_STATE_RECEIVED,
    RequestState.IN_PROGRESS: privacy_pb2.DATA_SUBJECT_REQUEST_STATE_IN_PROGRESS,
    RequestState.COMPLETED: privacy_pb2.DATA_SUBJECT_REQUEST_STATE_COMPLETED,
    RequestState.REJECTED: privacy_pb2.DATA_SUBJECT_REQUEST_STATE_REJECTED,
}
_STATES_IN = {proto: domain for domain, proto in _STATES.items()}


def new_request_in(request: privacy_pb2.CreateDataSubjectRequestRequest) -> NewRequest:
    user = USER.parse(request.parent, field="parent")["user"]
    if request.type not in _TYPES:
        raise InvalidArgument.for_field("type", "must be a defined request type")
    return NewRequest(user, request.request_id, _TYPES[request.type], request.details, request.contested_decision)


def state_in(state: int) -> RequestState | None:
    return _STATES_IN.get(state)  # type: ignore[call-overload, no-any-return]


def request_out(request: DataSubjectRequest) -> privacy_pb2.DataSubjectRequest:
    message = privacy_pb2.DataSubjectRequest(
        name=request.name, type=_TYPES_OUT[request.type], state=_STATES[request.state], details=request.details,
        receive_time=to_timestamp(request.receive_time), due_time=to_timestamp(request.due_time),
        extension_reason=request.extension_reason, rejection_reason=request.rejection_reason,
        export_size_bytes=request.export_size_bytes, contested_decision=request.contested_decision,
        retention_exceptions=[privacy_pb2.RetentionException(data_category=kept.data_category,
                                                             legal_basis=kept.legal_basis)
                              for kept in request.retention_exceptions])
    if request.complete_time is not None:
        message.complete_time.CopyFrom(to_timestamp(request.complete_time))
    for step in request.progress:
        progress = message.progress.add(service=step.service, done=step.done, summary=step.summary)
        if step.complete_time is not None:
            progress.complete_time.CopyFrom(to_timestamp(step.complete_time))
    return message

