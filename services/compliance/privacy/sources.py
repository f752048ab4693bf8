"""Compliance's own part of a data-subject request: the requests it holds about the subject."""

from __future__ import annotations

import asyncio
from typing import Any

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
