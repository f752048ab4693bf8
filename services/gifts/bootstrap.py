"""Where the gifts service is put together: configuration, clock, payments, store, use cases.

Nothing here runs at import time; `GiftsApp` is built by the server (or a test) and
closed by it.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from services.gifts.gifting import Command, Gifting, GiftsUnitOfWork, SweepResult
from services.gifts.store import GiftsStore

C = TypeVar("C", bound=Command)
R = TypeVar("R")


class GiftsApp:
    def __init__(self, *, store: GiftsStore, gifting: Gifting, new_request_id: Callable[[], str]) -> None:
        self.store = store
        self.gifting = gifting
        self._new_request_id = new_request_id

    def execute(self, use_case: Callable[[GiftsUnitOfWork, C], R], command: C, *, trace_id: str = "") -> Future[R]:
        """Run a use case in the next durable batch; a refusal leaves its audit event behind.

        `trace_id` is the request's trace, stamped on the audit events the use case writes.
        """
        return self.store.submit(lambda uow: use_case(uow, command),
                                 on_refused=lambda uow, error: self.gifting.record_refusal(uow, command, error),
                                 trace_id=trace_id)

    def sweep(self) -> Future[SweepResult]:
        request_id = self._new_request_id()
        return self.store.submit(lambda uow: self.gifting.sweep(uow, request_id))

    def close(self) -> None:
        self.store.close()
