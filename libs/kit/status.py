"""The one table from domain errors to gRPC status codes and `google.rpc` details (AIP-193)."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2

from libs import errors

ERROR_DOMAIN = "limelight.dev"

_STATUS_BY_ERROR: dict[type[errors.DomainError], grpc.StatusCode] = {
    errors.InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    errors.NotFound: grpc.StatusCode.NOT_FOUND,
    errors.AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    errors.FailedPrecondition: grpc.StatusCode.FAILED_PRECONDITION,
    errors.OutOfRange: grpc.StatusCode.OUT_OF_RANGE,
    errors.Unauthenticated: grpc.StatusCode.UNAUTHENTICATED,
    errors.PermissionDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.ResourceExhausted: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Aborted: grpc.StatusCode.ABORTED,
    errors.Unavailable: grpc.StatusCode.UNAVAILABLE,
}


def status_code_for(error: errors.DomainError) -> grpc.StatusCode:
    for error_type in type(error).__mro__:
        code = _STATUS_BY_ERROR.get(error_type)
        if code is not None:
            return code
    return grpc.StatusCode.INTERNAL


def _packed(detail: object) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(detail)  # type: ignore[arg-type]
    return packed


def to_rpc_status(error: errors.DomainError, *, service: str) -> status_pb2.Status:
    """`google.rpc.Status` for a domain error: BadRequest for field violations, ErrorInfo always."""
    code = status_code_for(error)
    status = status_pb2.Status(code=code.value[0], message=error.message)
    if isinstance(error, errors.InvalidArgument) and error.violations:
        status.details.append(
            _packed(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=violation.field, description=violation.description, reason=violation.reason
                        )
                        for violation in error.violations
                    ]
                )
            )
        )
    status.details.append(
        _packed(
            error_details_pb2.ErrorInfo(
                reason=error.reason, domain=f"{service}.{ERROR_DOMAIN}", metadata=error.metadata
            )
        )
    )
    if isinstance(error, errors.ResourceExhausted) and error.retry_delay is not None:
        delay = duration_pb2.Duration()
        delay.FromTimedelta(error.retry_delay)
        status.details.append(_packed(error_details_pb2.RetryInfo(retry_delay=delay)))
    if isinstance(error, errors.NotFound) and error.resource_name:
        status.details.append(_packed(error_details_pb2.ResourceInfo(resource_name=error.resource_name)))
    return status


def internal_status(trace_id: str) -> status_pb2.Status:
    """What a caller sees for an unexpected failure: no internals, only the id to look it up by."""
    return status_pb2.Status(
        code=code_pb2.INTERNAL,
        message=f"internal error; trace id {trace_id}",
        details=[
            _packed(
                error_details_pb2.ErrorInfo(
                    reason="INTERNAL", domain=ERROR_DOMAIN, metadata={"trace_id": trace_id}
                )
            )
        ],
    )


def unimplemented_status(method: str) -> status_pb2.Status:
    return status_pb2.Status(
        code=code_pb2.UNIMPLEMENTED,
        message=f"{method} is part of the contract but not built yet",
        details=[_packed(error_details_pb2.ErrorInfo(reason="NOT_BUILT_YET", domain=ERROR_DOMAIN,
                                                     metadata={"method": method}))],
    )
