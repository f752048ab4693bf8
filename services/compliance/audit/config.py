"""The audit area's settings, read once from the environment when the service is built.

| variable | default | what |
|---|---|---|
| `LIMELIGHT_AUDIT_ORIGIN` | `limelight.local/audit` | the log's origin line: names the log in every checkpoint and in its key |
| `LIMELIGHT_AUDIT_CHECKPOINT_MS` | `500` | least time between two checkpoints while events arrive |
| `LIMELIGHT_AUDIT_DENIAL_WINDOW_S` | `60` | refusals of tokenless calls are counted per peer, method and reason over this window, then logged as one event |
| `LIMELIGHT_AUDIT_DENIAL_MAX_PEERS` | `1024` | peers counted apart within a window; further peers share one count |
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass

DEFAULT_ORIGIN = "limelight.local/audit"


@dataclass(frozen=True, kw_only=True)
class AuditSettings:
    origin: str = DEFAULT_ORIGIN
    checkpoint_interval: dt.timedelta = dt.timedelta(milliseconds=500)
    denial_window: dt.timedelta = dt.timedelta(seconds=60)
    denial_max_peers: int = 1024

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> AuditSettings:
        defaults = cls()
        return cls(
            origin=environ.get("LIMELIGHT_AUDIT_ORIGIN", defaults.origin),
            checkpoint_interval=dt.timedelta(milliseconds=float(environ.get(
                "LIMELIGHT_AUDIT_CHECKPOINT_MS", defaults.checkpoint_interval / dt.timedelta(milliseconds=1)))),
            denial_window=dt.timedelta(seconds=float(environ.get(
                "LIMELIGHT_AUDIT_DENIAL_WINDOW_S", defaults.denial_window.total_seconds()))),
            denial_max_peers=int(environ.get("LIMELIGHT_AUDIT_DENIAL_MAX_PEERS", defaults.denial_max_peers)),
        )
