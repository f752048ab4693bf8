"""Privacy's domain: data keys and their destruction (crypto-shredding), and data-subject requests."""

from __future__ import annotations

import calendar
import datetime as dt
import enum
from dataclasses import dataclass, replace

from libs.errors import FailedPrecondition, InvalidArgument, NotFound
from libs.privacy.fields import SubjectErased
from libs.privacy.subject_data import RetentionException


@dataclass(frozen=True)
class StoredDataKey:
    """A subject's data key as compliance keeps it: wrapped by the key-encryption key, or shredded."""

    subject: str
    key_id: str
    wrapped: bytes | None
    create_time: dt.datetime
    shred_time: dt.datetime | None

    @property
    def shredded(self) -> bool:
        return self.wrapped is None


def erased(subject: str) -> SubjectErased:
    return SubjectErased(f"{subject} was erased: their data key is destroyed", metadata={"subject": subject})


def unknown_key(subject: str, key_id: str) -> NotFound:
    return NotFound(f"{subject} has no data key {key_id}", resource_name=subject, reason="DATA_KEY_NOT_FOUND")


class RequestType(enum.Enum):
    ACCESS = "ACCESS"
    PORTABILITY = "PORTABILITY"
    ERASURE = "ERASURE"
    RECTIFICATION = "RECTIFICATION"
    AUTOMATED_DECISION_REVIEW = "AUTOMATED_DECISION_REVIEW"

    @property
    def exports(self) -> bool:
        return self in (RequestType.ACCESS, RequestType.PORTABILITY)


class RequestState(enum.Enum):
    RECEIVED = "RECEIVED"
    IN_PROGRESS = "IN_PROGRESS"
    COMPLETED = "COMPLETED"
    REJECTED = "REJECTED"


# Art. 12(3): one month from receipt, extendable by two further months.
ANSWER_MONTHS = 1
MAX_EXTENSION_MONTHS = 2


def months_after(moment: dt.datetime, months: int) -> dt.datetime:
    """The same day `months` later, or the month's last day when it has no such day (31 Jan + 1 = 28/29 Feb)."""
    month_index = moment.month - 1 + months
    year, month = moment.year + month_index // 12, month_index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True)
class ServiceProgress:
    service: str
    done: bool
    complete_time: dt.datetime | None
    summary: str


@dataclass(frozen=True)
class DataSubjectRequest:
    user: str
    request_key: str
    type: RequestType
    state: RequestState
    details: str
    receive_time: dt.datetime
    due_time: dt.datetime
    requested_by: str
    extension_reason: str = ""
    complete_time: dt.datetime | None = None
    rejection_reason: str = ""
    progress: tuple[ServiceProgress, ...] = ()
    retention_exceptions: tuple[RetentionException, ...] = ()
    export_size_bytes: int = 0
    contested_decision: str = ""

    @property
    def subject(self) -> str:
        return f"users/{self.user}"

    @property
    def name(self) -> str:
        return f"users/{self.user}/dataSubjectRequests/{self.request_key}"

    @property
    def open(self) -> bool:
        return self.state in (RequestState.RECEIVED, RequestState.IN_PROGRESS)

    def extended(self, months: int, reason: str) -> DataSubjectRequest:
        if self.extension_reason:
            raise FailedPrecondition(f"{self.name} was extended once already", reason="REQUEST_ALREADY_EXTENDED",
                                     metadata={"request": self.name})
        if not self.open:
            raise FailedPrecondition(f"{self.name} is {self.state.value.lower()}: nothing left to extend",
                                     reason="REQUEST_NOT_OPEN", metadata={"request": self.name})
        if not 1 <= months <= MAX_EXTENSION_MONTHS:
            raise InvalidArgument.for_field("extension_months", f"must be 1..{MAX_EXTENSION_MONTHS}")
        return replace(self, due_time=months_after(self.due_time, months), extension_reason=reason)

    def rejected(self, reason: str, now: dt.datetime) -> DataSubjectRequest:
        if not self.open:
            raise FailedPrecondition(f"{self.name} is {self.state.value.lower()}: it can no longer be rejected",
                                     reason="REQUEST_NOT_OPEN", metadata={"request": self.name})
        return replace(self, state=RequestState.REJECTED, rejection_reason=reason, complete_time=now)


def not_found(name: str) -> NotFound:
    # The same answer for "missing" and "not yours": nobody learns whom a request is about.
    return NotFound(f"no data-subject request {name}", resource_name=name, reason="DATA_SUBJECT_REQUEST_NOT_FOUND")
