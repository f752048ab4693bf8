"""Privacy's use cases: hand out, create and destroy data keys.

The key-encryption key is a port (`KeyEncryptionKey`): the embedded default is a local key
file (`keyfile.py`); a KMS replaces it by implementing the same two calls.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

from libs.clock import Clock
from libs.privacy.sealing import DataKey
from services.compliance.privacy.model import StoredDataKey, erased, unknown_key


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
