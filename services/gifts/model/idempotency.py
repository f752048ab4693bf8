"""Request ids: one effect per id (AIP-155).

A request that changes state is claimed under its client-chosen `request_id` inside the
same unit of work as its effect, so the claim and the effect commit or vanish together.
The claim stores who asked, for what and with which parameters; a later request with the
same id gets the first result back if it asks the same thing, and `REQUEST_ID_REUSED`
if it does not.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from libs.errors import AlreadyExists

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

Parameters = dict[str, str | int | bool]
R = TypeVar("R", bound="DataclassInstance")


@dataclass(frozen=True)
class RequestRecord:
    request_id: str
    operation: str
    caller: str
    parameters: Parameters
    result: dict[str, Any] | None


class RequestLog(Protocol):
    def claim_request(self, request_id: str, operation: str, caller: str, parameters: Parameters,
                      now: dt.datetime) -> RequestRecord | None:
        """Record the request and return None, or return the earlier record under this id."""
        ...

    def record_result(self, request_id: str, result: dict[str, Any]) -> None: ...


class RequestIdReused(AlreadyExists):
    def __init__(self, request_id: str, *, first: RequestRecord, operation: str, caller: str,
                 parameters: Parameters) -> None:
        metadata = {"request_id": request_id}
        if first.caller == caller:  # another caller's request is none of this caller's business
            metadata["first_operation"] = first.operation
            differing = sorted(k for k in first.parameters.keys() | parameters.keys()
                               if first.parameters.get(k) != parameters.get(k))
            if first.operation == operation:
                metadata["differing_fields"] = ",".join(differing)
        super().__init__(
            f"request_id {request_id} was already used for a different request",
            reason="REQUEST_ID_REUSED",
            metadata=metadata,
        )


def run_once(requests: RequestLog, *, request_id: str, operation: str, caller: str, parameters: Parameters,
             now: dt.datetime, result_type: type[R], apply: Callable[[], R]) -> R:
    """Apply the request unless its id was claimed before; replay the first result if so.

    `result_type` is a dataclass of plain values, stored as its field dict.
    """
    earlier = requests.claim_request(request_id, operation, caller, parameters, now)
    if earlier is not None:
        if (earlier.operation, earlier.caller, earlier.parameters) != (operation, caller, parameters):
            raise RequestIdReused(request_id, first=earlier, operation=operation, caller=caller,
                                  parameters=parameters)
        if earlier.result is None:  # a claim always commits with its result
            raise RuntimeError(f"request {request_id} was claimed without a result")
        return result_type(**earlier.result)
    result = apply()
    # Results are flat dataclasses of plain values, so a shallow copy of the fields is the record.
    requests.record_result(request_id, dict(vars(result)))
    return result
