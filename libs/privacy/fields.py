"""Personal fields for services: seal before storing, open after reading, with keys from compliance.

    personal = PersonalData(RemoteDataKeys(runtime.clients.stub("compliance", PersonalDataKeyServiceStub)))
    sealed = await personal.seal("users/ada", "gift.message", "for you")   # bytes for a BLOB column
    text = await personal.open("users/ada", "gift.message", sealed)       # None once Ada was erased

A service stores only the sealed bytes; it never stores a key. Keys are cached in memory for
the TTL compliance names (seconds), so a hot path pays one AES-GCM operation per field, and an
erasure reaches every cache within that TTL. Non-personal fields, and pseudonymous references
(`libs.audit.pseudonyms`), stay plain and queryable.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Protocol

from libs.errors import FailedPrecondition
from libs.privacy.sealing import DataKey, as_text, fingerprint, from_text, key_id_of, open_sealed, seal

SHREDDED_REASON = "DATA_KEY_SHREDDED"


class SubjectErased(FailedPrecondition):
    """The subject's data key was destroyed: nothing new may be sealed for them."""

    default_reason = SHREDDED_REASON


class DataKeySource(Protocol):
    """Where data keys come from: compliance's key service, or a test's own."""

    async def current_key(self, subject: str) -> tuple[DataKey, float]:
        """The subject's key for sealing and how many seconds it may be cached; raises SubjectErased."""
        ...

    async def key(self, subject: str, key_id: str) -> tuple[DataKey | None, float]:
        """The key `key_id` of `subject` (None when destroyed or unknown) and its cache lifetime."""
        ...


class _Fetch:
    """The fetch of one subject's key: its lock and how many callers are in it or waiting."""

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.callers = 0


class PersonalData:
    """Seals and opens one subject's personal fields; caches keys in memory, never on disk."""

    def __init__(self, keys: DataKeySource, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._keys = keys
        self._monotonic = monotonic
        self._current: dict[str, tuple[DataKey, float]] = {}
        self._by_id: dict[tuple[str, str], tuple[DataKey | None, float]] = {}
        self._fetching: dict[str, _Fetch] = {}  # per subject: a miss for one never waits for another's

    async def seal(self, subject: str, field_name: str, plaintext: str) -> bytes:
        return seal(await self._current_key(subject), subject, field_name, plaintext)

    async def open(self, subject: str, field_name: str, sealed: bytes | None) -> str | None:
        """The plaintext, or None when nothing was stored or the subject's key is gone (erased)."""
        if sealed is None:
            return None
        key = await self._key(subject, key_id_of(sealed))
        return None if key is None else open_sealed(key, subject, field_name, sealed)

    async def seal_text(self, subject: str, field_name: str, plaintext: str) -> str:
        """`seal` for a TEXT column or a JSON document (`sealed:` and base64url)."""
        return as_text(await self.seal(subject, field_name, plaintext))

    async def open_text(self, subject: str, field_name: str, stored: str) -> str | None:
        """The plaintext of `seal_text`'s form; None once the subject was erased. Text without the
        `sealed:` prefix is a value stored before the field was sealed, returned as it is."""
        sealed = from_text(stored)
        return stored if sealed is None else await self.open(subject, field_name, sealed)

    async def fingerprint(self, subject: str, field_name: str, plaintext: str) -> str:
        """A keyed digest of the field under the subject's current key (`sealing.fingerprint`): equal
        for equal plaintexts, so a retried request can be recognised without storing its text."""
        return fingerprint(await self._current_key(subject), subject, field_name, plaintext)

    def forget(self, subject: str) -> None:
        """Drops the subject's cached keys now (this process learnt of their erasure first-hand)."""
        self._current.pop(subject, None)
        for cached in [cached for cached in self._by_id if cached[0] == subject]:
            del self._by_id[cached]

    async def _current_key(self, subject: str) -> DataKey:
        cached = self._current.get(subject)
        if cached is not None and cached[1] > self._monotonic():
            return cached[0]
        fetch = self._fetching.setdefault(subject, _Fetch())
        fetch.callers += 1
        try:
            async with fetch.lock:  # one fetch per subject, however many callers miss together
                cached = self._current.get(subject)
                if cached is not None and cached[1] > self._monotonic():
                    return cached[0]
                key, ttl = await self._keys.current_key(subject)
                expiry = self._monotonic() + ttl
                self._current[subject] = (key, expiry)
                self._by_id[(subject, key.key_id)] = (key, expiry)
                return key
        finally:
            fetch.callers -= 1
            if fetch.callers == 0:  # the map holds only the subjects being fetched
                del self._fetching[subject]

    async def _key(self, subject: str, key_id: str) -> DataKey | None:
        cached = self._by_id.get((subject, key_id))
        if cached is not None and cached[1] > self._monotonic():
            return cached[0]
        key, ttl = await self._keys.key(subject, key_id)
        self._by_id[(subject, key_id)] = (key, self._monotonic() + ttl)
        return key


class EphemeralDataKeys:
    """Keys held in this process's memory only, for a process that runs without compliance (a
    store's own tests, a benchmark): they die with the process, and `shred` forgets one subject's
    (a `PersonalData` over them learns of it after `cache_ttl`, or at once through `forget`)."""

    def __init__(self, *, cache_ttl: float = 60.0) -> None:
        self._keys: dict[str, DataKey | None] = {}
        self._cache_ttl = cache_ttl

    async def current_key(self, subject: str) -> tuple[DataKey, float]:
        key = self._keys.setdefault(subject, DataKey.generate())
        if key is None:
            raise SubjectErased(f"{subject} was erased", metadata={"subject": subject})
        return key, self._cache_ttl

    async def key(self, subject: str, key_id: str) -> tuple[DataKey | None, float]:
        key = self._keys.get(subject)
        return (key if key is not None and key.key_id == key_id else None), self._cache_ttl

    def shred(self, subject: str) -> None:
        self._keys[subject] = None
