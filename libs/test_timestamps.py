from __future__ import annotations

import datetime as dt

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from libs.errors import InvalidArgument
from libs.timestamps import (
    MAX_SECONDS,
    MIN_SECONDS,
    duration_us,
    epoch_us,
    from_epoch_us,
    from_timestamp,
    timestamp_from_us,
    timestamp_to_us,
    to_timestamp,
)

moments = st.datetimes(timezones=st.just(dt.UTC))


@given(moment=moments)
def test_a_moment_survives_both_encodings(moment: dt.datetime) -> None:
    assert from_epoch_us(epoch_us(moment)) == moment
    assert from_timestamp(to_timestamp(moment), field="start_time") == moment
    assert timestamp_to_us(timestamp_from_us(epoch_us(moment)), field="t") == epoch_us(moment)


def test_other_zones_are_the_same_instant_and_naive_times_are_a_bug() -> None:
    berlin = dt.datetime(2026, 3, 1, 13, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    assert epoch_us(berlin) == epoch_us(dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC))
    assert from_epoch_us(0).tzinfo is dt.UTC
    with pytest.raises(ValueError):
        epoch_us(dt.datetime(2026, 3, 1))
    assert duration_us(dt.timedelta(seconds=1, microseconds=5)) == 1_000_005


@pytest.mark.parametrize("seconds, nanos", [(MAX_SECONDS + 1, 0), (MIN_SECONDS - 1, 0), (0, -1), (0, 10**9)])
def test_an_out_of_range_timestamp_is_refused_on_its_field(seconds: int, nanos: int) -> None:
    with pytest.raises(InvalidArgument) as refused:
        from_timestamp(Timestamp(seconds=seconds, nanos=nanos), field="window.start_time")
    assert refused.value.violations[0].field == "window.start_time"


def test_nanoseconds_below_a_microsecond_are_truncated() -> None:
    assert timestamp_to_us(Timestamp(seconds=1, nanos=1999), field="t") == 1_000_001
