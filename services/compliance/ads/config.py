"""AdRepositoryService's settings, from the environment.

    LIMELIGHT_ADS_RETENTION_SWEEP_SECONDS   how often expired entries are deleted (default 3600).
                                            The retention itself (one year after the last
                                            display) is the law's, not a setting.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class AdsConfig:
    retention_sweep_seconds: float = 3600.0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> AdsConfig:
        configured = environ.get("LIMELIGHT_ADS_RETENTION_SWEEP_SECONDS")
        return cls(retention_sweep_seconds=float(configured) if configured else cls.retention_sweep_seconds)
