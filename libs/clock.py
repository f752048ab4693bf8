"""Time as domain code sees it: an injected callable returning an aware UTC datetime.

Domain modules take a `Clock` so tests can move time; production wiring passes `utc_now`.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)
