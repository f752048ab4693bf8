from __future__ import annotations

import datetime as dt
import json

import pytest

from libs.audit.events import AuditEvent, Outcome, canonical_json

EVENT = AuditEvent(
    event_id="5f0c6a4e-8a1b-4c55-9d7e-0b7c1d2e3f40",
    actor="services/gifts",
    on_behalf_of="users/ada",
    action="gifts.SendGift",
    resource="creators/bo/lives/l1/gifts/g7",
    outcome=Outcome.REJECTED,
    reason="VIEWER_UNDER_18",
    trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
    event_time=dt.datetime(2025, 5, 1, 14, 30, 5, 120000, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    subject_ref="9f" * 32,
    attributes={"rule": "§ 104 BGB", "coins": "30"},
)


def test_canonical_bytes_are_sorted_compact_utf8_with_utc_microseconds() -> None:
    assert EVENT.canonical_bytes() == (
        '{"action":"gifts.SendGift","actor":"services/gifts","attributes":{"coins":"30","rule":"§ 104 BGB"},'
        '"event_id":"5f0c6a4e-8a1b-4c55-9d7e-0b7c1d2e3f40","event_time":"2025-05-01T12:30:05.120000Z",'
        '"on_behalf_of":"users/ada","outcome":"rejected","reason":"VIEWER_UNDER_18",'
        '"resource":"creators/bo/lives/l1/gifts/g7","subject_ref":"' + "9f" * 32 + '",'
        '"trace_id":"4bf92f3577b34da6a3ce929d0e0e4736","v":1}'
    ).encode()


def test_an_event_survives_a_round_trip_through_its_record() -> None:
    record = json.loads(EVENT.canonical_bytes())
    assert AuditEvent.from_record(record) == EVENT
    assert canonical_json(record) == EVENT.canonical_bytes()


def test_an_event_without_a_time_zone_is_refused() -> None:
    with pytest.raises(ValueError):
        AuditEvent(event_id="id", actor="services/x", action="x.Y", resource="r", outcome=Outcome.SUCCEEDED,
                   event_time=dt.datetime(2025, 1, 1))
