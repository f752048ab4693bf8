"""The domain-error hierarchy every Limelight service raises.

Domain code raises these and never imports gRPC. The service kit maps each class to
one status code and to `google.rpc` details in a single table
(`libs/kit/status.py`); anything else that escapes a handler becomes INTERNAL and is
logged with its trace id.

    DomainError                      -> (abstract)
    ├── InvalidArgument              -> INVALID_ARGUMENT + BadRequest(field_violations)
    ├── NotFound                     -> NOT_FOUND        + ErrorInfo, ResourceInfo
    ├── AlreadyExists                -> ALREADY_EXISTS   + ErrorInfo
    ├── FailedPrecondition           -> FAILED_PRECONDITION + ErrorInfo
    ├── OutOfRange                   -> OUT_OF_RANGE     + ErrorInfo
    ├── Unauthenticated              -> UNAUTHENTICATED  + ErrorInfo
    ├── PermissionDenied             -> PERMISSION_DENIED + ErrorInfo
    ├── ResourceExhausted            -> RESOURCE_EXHAUSTED + ErrorInfo, RetryInfo when a delay is known
    ├── Aborted                      -> ABORTED          + ErrorInfo
    └── Unavailable                  -> UNAVAILABLE      + ErrorInfo

`reason` is an UPPER_SNAKE_CASE constant a caller can branch on (AIP-193); `metadata`
holds string facts that explain it (the limit, the current balance, ...).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field, named by its path in the request (`page_size`, `items[2].sku`)."""

    field: str
    description: str
    reason: str = ""


class DomainError(Exception):
    """Base of every error a handler may let escape on purpose."""

    default_reason = "DOMAIN_ERROR"

    def __init__(
        self,
        message: str,
        *,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.reason = reason or self.default_reason
        self.metadata: dict[str, str] = {k: str(v) for k, v in (metadata or {}).items()}


class InvalidArgument(DomainError):
    default_reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        *,
        violations: list[FieldViolation] | None = None,
        reason: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.violations: list[FieldViolation] = list(violations or [])

    @classmethod
    def for_field(cls, field_path: str, description: str, *, reason: str = "") -> InvalidArgument:
        return cls(
            f"{field_path}: {description}",
            violations=[FieldViolation(field_path, description, reason)],
            reason=reason or None,
        )


class NotFound(DomainError):
    default_reason = "NOT_FOUND"

    def __init__(self, message: str, *, resource_name: str = "", reason: str | None = None,
                 metadata: dict[str, str] | None = None) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.resource_name = resource_name


class AlreadyExists(DomainError):
    default_reason = "ALREADY_EXISTS"


class FailedPrecondition(DomainError):
    default_reason = "FAILED_PRECONDITION"


class OutOfRange(DomainError):
    default_reason = "OUT_OF_RANGE"


class Unauthenticated(DomainError):
    default_reason = "UNAUTHENTICATED"


class PermissionDenied(DomainError):
    default_reason = "PERMISSION_DENIED"


class ResourceExhausted(DomainError):
    """A quota or limit was hit; `retry_delay`, when set, tells the caller when to try again."""

    default_reason = "RESOURCE_EXHAUSTED"

    def __init__(self, message: str, *, reason: str | None = None, metadata: dict[str, str] | None = None,
                 retry_delay: dt.timedelta | None = None) -> None:
        super().__init__(message, reason=reason, metadata=metadata)
        self.retry_delay = retry_delay


class Aborted(DomainError):
    default_reason = "ABORTED"


class Unavailable(DomainError):
    default_reason = "UNAVAILABLE"
