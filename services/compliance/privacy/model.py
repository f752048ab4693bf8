"""Privacy's domain: data keys and their destruction (crypto-shredding)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from libs.errors import NotFound
from libs.privacy.fields import SubjectErased


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
