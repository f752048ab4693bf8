"""Privacy's use cases: hand out, create and destroy data keys; answer data-subject requests.

The key-encryption key is a port (`KeyEncryptionKey`): the embedded default is a local key
file (`keyfile.py`); a KMS replaces it by implementing the same two calls.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any, Protocol

from libs.clock import Clock
from libs.errors import AlreadyExists, FailedPrecondition, Unavailable
from libs.privacy.fields import SubjectErased
from libs.privacy.sealing import DataKey, key_id_of, open_sealed, seal
from libs.privacy.subject_data import Erasure, RetentionException
from services.compliance.privacy.model import (
    ANSWER_MONTHS,
    DataSubjectRequest,
    RequestState,
    RequestType,
    ServiceProgress,
    StoredDataKey,
    erased,
    months_after,
    not_found,
    unknown_key,
)


class KeyEncryptionKey(Protocol):
    def wrap(self, subject: str, key: DataKey) -> bytes: ...
    def unwrap(self, subject: str, key_id: str, wrapped: bytes) -> bytes: ...


class DataKeyStore(Protocol):
    def data_key(self, subject: str) -> StoredDataKey | None: ...
    def add_data_key(self, key: StoredDataKey) -> StoredDataKey:
        """Stores `key` unless the subject has one already; returns the subject's key either way."""
        ...
    def shred_data_key(self, subject: str, key_id: str, now: dt.datetime) -> bool:
        """Destroys the wrapped key; True when it existed and was not yet destroyed."""
        ...


class DataKeys:
    def __init__(self, store: DataKeyStore, kek: KeyEncryptionKey, clock: Clock) -> None:
        self._store = store
        self._kek = kek
        self._clock = clock

    def current_key(self, subject: str) -> DataKey:
        stored = self._store.data_key(subject)
        if stored is None:
            fresh = DataKey.generate()
            stored = self._store.add_data_key(StoredDataKey(subject, fresh.key_id, self._kek.wrap(subject, fresh),
                                                            self._clock(), None))
        return self._unwrapped(stored)

    def key(self, subject: str, key_id: str) -> DataKey:
        stored = self._store.data_key(subject)
        if stored is None or stored.key_id != key_id:
            raise unknown_key(subject, key_id)
        return self._unwrapped(stored)

    def shred(self, subject: str) -> bool:
        """Destroys the subject's key (erasure); True when there was one to destroy. Idempotent."""
        stored = self._store.data_key(subject)
        if stored is None:
            # Erased before any field was sealed: a tombstone, so nothing can be sealed for them later.
            stored = self._store.add_data_key(StoredDataKey(subject, DataKey.generate().key_id, None,
                                                            self._clock(), self._clock()))
            return False
        return self._store.shred_data_key(subject, stored.key_id, self._clock())

    def _unwrapped(self, stored: StoredDataKey) -> DataKey:
        if stored.wrapped is None:
            raise erased(stored.subject)
        return DataKey(stored.key_id, self._kek.unwrap(stored.subject, stored.key_id, stored.wrapped))


# -- data-subject requests (Art. 12, 15, 17, 20) -------------------------------------------------


class SubjectDataSource(Protocol):
    """One service's part of a request: everything it holds about a subject, and its erasure step."""

    service: str

    async def export(self, subject: str) -> dict[str, Any]: ...
    async def erase(self, subject: str) -> Erasure: ...


class RequestAudit(Protocol):
    """The audit event of one step, built on the request's task; the store writes it with the change."""

    def step(self, action: str, request: DataSubjectRequest, **attributes: str) -> object: ...


class RequestStore(Protocol):
    def request_for(self, request_id: str) -> tuple[DataSubjectRequest, str] | None: ...
    def request(self, name: str) -> DataSubjectRequest | None: ...
    def add_request(self, request: DataSubjectRequest, request_id: str, fingerprint: str,
                    sealed_details: bytes | None, event: object) -> DataSubjectRequest: ...
    def save_request(self, request: DataSubjectRequest, event: object, export: bytes | None = None, *,
                     replacing: DataSubjectRequest) -> None:
        """Raises Aborted (REQUEST_CHANGED_CONCURRENTLY) when the stored request is no longer `replacing`."""
        ...
    def requests(self, user: str | None, state: RequestState | None, overdue_at: dt.datetime | None,
                 after: tuple[int, str] | None, limit: int) -> list[DataSubjectRequest]: ...
    def export_of(self, name: str) -> bytes | None: ...
    def sealed_details(self, name: str) -> bytes | None: ...


@dataclass(frozen=True)
class NewRequest:
    user: str
    request_id: str
    type: RequestType
    details: str
    contested_decision: str


DETAILS_FIELD = "privacy.request_details"
EXPORT_FIELD = "privacy.export"
AUDIT_RETENTION = RetentionException(
    "compliance.audit_trail", "Art. 5(2) and 30 GDPR: audit events stay, pseudonymous (an HMAC, no personal data)")


class DataSubjectRequests:
    def __init__(self, store: RequestStore, keys: DataKeys, sources: Sequence[SubjectDataSource], clock: Clock,
                 *, new_key: Callable[[], str] = lambda: uuid.uuid4().hex[:20]) -> None:
        self._store = store
        self._keys = keys
        self._sources = sources
        self._clock = clock
        self._new_key = new_key

    async def create(self, command: NewRequest, requested_by: str, audit: RequestAudit) -> DataSubjectRequest:
        fingerprint = hashlib.sha256(json.dumps([command.user, command.type.value, command.details,
                                                 command.contested_decision]).encode()).hexdigest()
        existing = await asyncio.to_thread(self._store.request_for, command.request_id)
        if existing is not None:
            if existing[1] != fingerprint:
                raise AlreadyExists(f"request_id {command.request_id} opened a different request",
                                    reason="REQUEST_ID_REUSED", metadata={"request": existing[0].name})
            return existing[0]
        now = self._clock()
        request = DataSubjectRequest(command.user, self._new_key(), command.type, RequestState.RECEIVED,
                                     command.details, now, months_after(now, ANSWER_MONTHS), requested_by,
                                     contested_decision=command.contested_decision)
        stored = await asyncio.to_thread(self._store.add_request, request, command.request_id, fingerprint,
                                         self._sealed(request.subject, DETAILS_FIELD, command.details),
                                         audit.step("compliance.CreateDataSubjectRequest", request))
        if stored.type.exports:
            return await self._export(stored, audit)
        if stored.type is RequestType.ERASURE:
            return await self._erase(stored, audit)
        return stored  # rectification and review wait for an officer

    async def get(self, name: str) -> DataSubjectRequest:
        request = await asyncio.to_thread(self._store.request, name)
        if request is None:
            raise not_found(name)
        return await asyncio.to_thread(self._with_details, request)

    async def list(self, user: str | None, state: RequestState | None, overdue_only: bool,
                   after: tuple[int, str] | None, limit: int) -> list[DataSubjectRequest]:
        found = await asyncio.to_thread(self._store.requests, user, state, self._clock() if overdue_only else None,
                                        after, limit)
        return [await asyncio.to_thread(self._with_details, request) for request in found]

    def _with_details(self, request: DataSubjectRequest) -> DataSubjectRequest:
        """The request with the subject's words opened; '' once they are erased."""
        sealed = self._store.sealed_details(request.name)
        if sealed is None:
            return request
        try:
            key = self._keys.key(request.subject, key_id_of(sealed))
        except SubjectErased:
            return request
        return replace(request, details=open_sealed(key, request.subject, DETAILS_FIELD, sealed))

    async def extend(self, name: str, months: int, reason: str, audit: RequestAudit) -> DataSubjectRequest:
        current = await self.get(name)
        extended = current.extended(months, reason)
        await asyncio.to_thread(partial(self._store.save_request, replacing=current), extended,
                                audit.step("compliance.ExtendDataSubjectRequest", extended, months=str(months)))
        return extended

    async def reject(self, name: str, reason: str, audit: RequestAudit) -> DataSubjectRequest:
        current = await self.get(name)
        rejected = current.rejected(reason, self._clock())
        await asyncio.to_thread(partial(self._store.save_request, replacing=current), rejected,
                                audit.step("compliance.RejectDataSubjectRequest", rejected))
        return rejected

    async def export(self, name: str) -> bytes:
        request = await self.get(name)
        if not request.type.exports or request.state is not RequestState.COMPLETED:
            raise FailedPrecondition(f"{name} has no export (only a completed access or portability request has one)",
                                     reason="EXPORT_NOT_READY", metadata={"request": name})
        sealed = await asyncio.to_thread(self._store.export_of, name)
        if sealed is None:
            raise FailedPrecondition(f"{name} has no export", reason="EXPORT_NOT_READY", metadata={"request": name})
        if sealed.startswith(b"{"):  # made after the erasure: no key to seal it with, and nothing personal in it
            return sealed
        try:
            return open_sealed(self._keys.key(request.subject, key_id_of(sealed)), request.subject, EXPORT_FIELD,
                               sealed).encode()
        except SubjectErased:
            return _archive(request, now=request.complete_time or request.receive_time, sections={}).encode()

    async def _export(self, request: DataSubjectRequest, audit: RequestAudit) -> DataSubjectRequest:
        sections: dict[str, dict[str, Any]] = {}
        progress: list[ServiceProgress] = []
        for source in self._sources:
            try:
                sections[source.service] = await source.export(request.subject)
            except Unavailable as error:
                progress.append(ServiceProgress(source.service, False, None, error.message))
                continue
            progress.append(ServiceProgress(source.service, True, self._clock(),
                                            f"{len(sections[source.service])} sections exported"))
        if not all(step.done for step in progress):
            # An export missing a service would not be "everything we hold": the request stays open.
            waiting = replace(request, state=RequestState.IN_PROGRESS, progress=tuple(progress))
            await asyncio.to_thread(partial(self._store.save_request, replacing=request), waiting,
                                    audit.step("compliance.ExportSubjectData", waiting, outcome="incomplete"))
            return waiting
        now = self._clock()
        archive = _archive(request, now=now, sections=sections)
        sealed = self._sealed(request.subject, EXPORT_FIELD, archive)
        completed = replace(request, state=RequestState.COMPLETED, complete_time=now, progress=tuple(progress),
                            export_size_bytes=len(archive.encode()))
        await asyncio.to_thread(partial(self._store.save_request, replacing=request), completed,
                                audit.step("compliance.ExportSubjectData", completed,
                                           sources=",".join(sections), size_bytes=str(completed.export_size_bytes)),
                                sealed if sealed is not None else archive.encode())
        return completed

    async def _erase(self, request: DataSubjectRequest, audit: RequestAudit) -> DataSubjectRequest:
        progress: list[ServiceProgress] = []
        kept: list[RetentionException] = [AUDIT_RETENTION]
        stored = request  # the version each step replaces
        for source in self._sources:
            try:
                erasure = await source.erase(request.subject)
            except Unavailable as error:
                progress.append(ServiceProgress(source.service, False, None, error.message))
                continue
            progress.append(ServiceProgress(source.service, True, self._clock(), erasure.summary))
            kept += erasure.kept
            step = replace(request, state=RequestState.IN_PROGRESS, progress=tuple(progress))
            await asyncio.to_thread(partial(self._store.save_request, replacing=stored), step,
                                    audit.step("compliance.EraseSubjectData", step, service=source.service))
            stored = step
        # Last: the key. Every sealed copy, in every service and every backup, is unreadable from here on.
        shredded = await asyncio.to_thread(self._keys.shred, request.subject)
        progress.append(ServiceProgress("services/compliance", True, self._clock(),
                                        "data key destroyed" if shredded else "no data key had been issued"))
        # Shredded even when a service's step failed: its sealed fields are unreadable now all the same;
        # the request stays open, naming the step that did not run, until a new request runs it.
        complete = all(step.done for step in progress)
        completed = replace(request, state=RequestState.COMPLETED if complete else RequestState.IN_PROGRESS,
                            complete_time=self._clock() if complete else None,
                            progress=tuple(progress), retention_exceptions=tuple(kept))
        await asyncio.to_thread(partial(self._store.save_request, replacing=stored), completed,
                                audit.step("compliance.ShredDataKey", completed, shredded=str(shredded).lower()))
        return completed

    def _sealed(self, subject: str, field_name: str, text: str) -> bytes | None:
        """`text` sealed under the subject's key; None once they are erased (there is nothing to seal it with)."""
        try:
            return seal(self._keys.current_key(subject), subject, field_name, text)
        except SubjectErased:
            return None


def _archive(request: DataSubjectRequest, *, now: dt.datetime, sections: Mapping[str, dict[str, Any]]) -> str:
    """The export: machine-readable JSON (Art. 20), with an index of its sources."""
    return json.dumps({
        "subject": request.subject,
        "request": request.name,
        "generated_time": now.isoformat(),
        "index": [{"source": source, "sections": sorted(data)} for source, data in sections.items()],
        "sources": sections,
    }, ensure_ascii=False, sort_keys=True, indent=2)
