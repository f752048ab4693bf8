"""Identifiers the gifts service mints: time-ordered UUIDs."""

from __future__ import annotations

import datetime as dt
import random
import uuid

from libs.timestamps import epoch_us


def uuid7(moment: dt.datetime) -> str:
    """A time-ordered UUID (RFC 9562 version 7): ids made later sort later, so the indexes
    they key grow at one end instead of splitting pages all over.

    The random bits only keep ids of the same millisecond apart; they are not secrets (every
    read is authorised), so the fast generator serves.
    """
    milliseconds = epoch_us(moment) // 1000
    value = (milliseconds & (1 << 48) - 1) << 80 | random.getrandbits(80)
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 4122 variant
    return str(uuid.UUID(int=value))
