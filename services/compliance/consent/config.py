"""ConsentService's settings, from the environment.

    LIMELIGHT_CONSENT_STATE_CACHE   how many users' consent states CheckConsent keeps in memory
                                    (default 100000); a miss reads the store. Off on PostgreSQL,
                                    where other replicas write the same history.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ConsentConfig:
    state_cache_size: int = 100_000

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> ConsentConfig:
        configured = environ.get("LIMELIGHT_CONSENT_STATE_CACHE")
        return cls(state_cache_size=int(configured)) if configured else cls()
