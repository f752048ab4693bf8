"""Privacy's settings, from the environment.

    LIMELIGHT_PRIVACY_KEY_CACHE_SECONDS   how long a service may cache a data key in memory
                                          (default 30): the longest an erasure takes to reach
                                          every cache.
    LIMELIGHT_PRIVACY_SOURCES             the services a data-subject request reaches besides
                                          compliance, comma-separated (default
                                          "affiliate,gifts,ingest,ranking,shop"; "" for none).
                                          Each serves the shared SubjectDataService.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class PrivacyConfig:
    key_cache_ttl: dt.timedelta = dt.timedelta(seconds=30)
    sources: tuple[str, ...] = ("affiliate", "gifts", "ingest", "ranking", "shop")

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> PrivacyConfig:
        ttl = environ.get("LIMELIGHT_PRIVACY_KEY_CACHE_SECONDS")
        sources = environ.get("LIMELIGHT_PRIVACY_SOURCES")
        return cls(key_cache_ttl=dt.timedelta(seconds=float(ttl)) if ttl else cls.key_cache_ttl,
                   sources=cls.sources if sources is None else tuple(s.strip() for s in sources.split(",") if s.strip()))
