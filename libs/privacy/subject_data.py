"""A service's part of a data-subject request (GDPR Art. 15, 17, 20), as plain types.

Every service holding personal data has a holder of this shape; `libs.privacy.servicer` serves it
as the shared `limelight.privacy.v1.SubjectDataService`, and compliance's request gathers the
same shape from every service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class RetentionException:
    """Data kept despite an erasure request: what, and the legal obligation that keeps it."""

    data_category: str
    legal_basis: str


@dataclass(frozen=True)
class Erasure:
    """What one service's erasure step did, and what it had to keep (and why)."""

    summary: str
    kept: tuple[RetentionException, ...] = ()


class SubjectDataHolder(Protocol):
    """What one service holds about a user (`user_id`, the id of `users/{user}`): its export,
    personal fields decrypted, as JSON-ready sections ({} when nothing), and its erasure step,
    which must be idempotent."""

    async def export(self, user_id: str) -> Mapping[str, Any]: ...
    async def erase(self, user_id: str) -> Erasure: ...
