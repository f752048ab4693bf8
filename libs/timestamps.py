"""Time at the edges: proto `Timestamp` <-> aware UTC `datetime` <-> epoch microseconds.

Domain code holds aware UTC datetimes (from a `libs.clock.Clock`). Messages carry
`google.protobuf.Timestamp`; stores persist integers (microseconds since the Unix epoch),
which sort and compare in SQL. Converting a request's Timestamp validates it and names
the field in the `InvalidArgument`, so a handler never lets a malformed time through:

    start = from_timestamp(request.start_time, field="start_time")
    row = (epoch_us(session.started_at),)          # store.py
    session.started_at = from_epoch_us(row[0])
    message.start_time.CopyFrom(to_timestamp(session.started_at))

Precision is the microsecond: nanoseconds below it are truncated, as `datetime` does.
"""

from __future__ import annotations

import datetime as dt

from google.protobuf.timestamp_pb2 import Timestamp

from libs.errors import InvalidArgument

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_MICROSECOND = dt.timedelta(microseconds=1)
# The range RFC 3339 and google.protobuf.Timestamp allow: 0001-01-01 to 9999-12-31.
MIN_SECONDS = -62_135_596_800
MAX_SECONDS = 253_402_300_799


def epoch_us(moment: dt.datetime) -> int:
    """Microseconds since the Unix epoch; ValueError for a naive datetime (a programming error)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("times must be aware datetimes (use libs.clock.utc_now)")
    return (moment - EPOCH) // _MICROSECOND


def from_epoch_us(micros: int) -> dt.datetime:
    """The aware UTC datetime `micros` microseconds after the Unix epoch."""
    return EPOCH + dt.timedelta(microseconds=micros)


def duration_us(delta: dt.timedelta) -> int:
    """A duration in whole microseconds, for adding to an epoch_us value."""
    return delta // _MICROSECOND


def to_timestamp(moment: dt.datetime) -> Timestamp:
    """The proto Timestamp of an aware datetime."""
    return timestamp_from_us(epoch_us(moment))


def timestamp_from_us(micros: int) -> Timestamp:
    stamp = Timestamp()
    stamp.FromMicroseconds(micros)
    return stamp


def from_timestamp(stamp: Timestamp, *, field: str) -> dt.datetime:
    """The aware UTC datetime of a request's Timestamp; InvalidArgument on `field` if out of range."""
    return from_epoch_us(timestamp_to_us(stamp, field=field))


def timestamp_to_us(stamp: Timestamp, *, field: str) -> int:
    """A request's Timestamp in epoch microseconds; InvalidArgument on `field` if out of range."""
    if not MIN_SECONDS <= stamp.seconds <= MAX_SECONDS:
        raise InvalidArgument.for_field(field, "must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z")
    if not 0 <= stamp.nanos <= 999_999_999:
        raise InvalidArgument.for_field(field, "nanos must be between 0 and 999999999")
    return stamp.seconds * 1_000_000 + stamp.nanos // 1000
