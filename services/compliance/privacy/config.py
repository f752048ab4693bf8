"""Privacy's settings, from the environment.

    LIMELIGHT_PRIVACY_KEY_CACHE_SECONDS   how long a service may cache a data key in memory
                                          (default 30): the longest an erasure takes to reach
                                          every cache.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PrivacyConfig:
    key_cache_ttl: dt.timedelta = dt.timedelta(seconds=30)

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> PrivacyConfig:
        configured = environ.get("LIMELIGHT_PRIVACY_KEY_CACHE_SECONDS")
        return cls(key_cache_ttl=dt.timedelta(seconds=float(configured))) if configured else cls()
