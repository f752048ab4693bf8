"""Leaderboard periods: the UTC day, the ISO week (from Monday) or the calendar month."""

from __future__ import annotations

import datetime as dt
import enum


class Period(enum.StrEnum):
    DAY = "DAY"
    WEEK = "WEEK"
    MONTH = "MONTH"


def period_bounds(moment: dt.datetime, period: Period) -> tuple[dt.datetime, dt.datetime]:
    """[start, end) of the period holding `moment`."""
    day = dt.datetime.combine(moment.astimezone(dt.UTC).date(), dt.time(), dt.UTC)
    if period is Period.DAY:
        return day, day + dt.timedelta(days=1)
    if period is Period.WEEK:
        monday = day - dt.timedelta(days=day.weekday())
        return monday, monday + dt.timedelta(weeks=1)
    first = day.replace(day=1)
    return first, (first + dt.timedelta(days=32)).replace(day=1)
