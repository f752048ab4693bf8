from __future__ import annotations

import datetime as dt
import json

import pytest

from libs.audit.events import AuditEvent, Outcome, canonical_json, subject_reference

EVENT = AuditEvent(
    event_id="5f0c6a4e-8a1b-4c55-9d7e-0b7c1d2e3f40",
    actor="services/gifts",
    action="limelight.gifts.v1.GiftService/SendGift",
    resource="streams/s1/gifts/g7",
    outcome=Outcome.DENIED,
    reason="VIEWER_UNDER_18 – Jugendschutz",
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    occurred_at=dt.datetime(2025, 5, 1, 14, 30, 5, 120000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    subject_ref="9f" * 32,
)


def test_canonical_bytes_are_sorted_compact_utf8_with_utc_microseconds() -> None:
    assert EVENT.canonical_bytes() == (
        '{"action":"limelight.gifts.v1.GiftService/SendGift","actor":"services/gifts",'
        '"event_id":"5f0c6a4e-8a1b-4c55-9d7e-0b7c1d2e3f40","occurred_at":"2025-05-01T12:30:05.120000Z",'
        '"outcome":"denied","reason":"VIEWER_UNDER_18 – Jugendschutz","resource":"streams/s1/gifts/g7",'
        '"subject_ref":"' + "9f" * 32 + '","trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","v":1}'
    ).encode()


def test_an_event_survives_a_round_trip_through_its_record() -> None:
    record = json.loads(EVENT.canonical_bytes())
    assert AuditEvent.from_record(record) == EVENT
    assert canonical_json(record) == EVENT.canonical_bytes()


def test_an_event_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError):
        AuditEvent("id", "services/x", "a", "r", Outcome.SUCCESS, "", "", dt.datetime(2025, 1, 1))


def test_subject_references_are_stable_and_depend_on_the_secret() -> None:
    secret, other = b"k" * 32, b"j" * 32
    assert subject_reference(secret, "users/42") == subject_reference(secret, "users/42")
    assert subject_reference(secret, "users/42") != subject_reference(secret, "users/43")
    assert subject_reference(secret, "users/42") != subject_reference(other, "users/42")
    with pytest.raises(ValueError):
        subject_reference(b"short", "users/42")
