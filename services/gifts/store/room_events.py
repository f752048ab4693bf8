"""Room events as JSON: the one codec of the room store's event log and the room bus.

The store writes events without their personal text (chat and question texts are sealed in
their own tables, and joined back on replay); the bus carries them whole, for the moment
between commit and delivery.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any

from libs.timestamps import epoch_us, from_epoch_us
from services.gifts.model.room import (
    ChatDeleted,
    ChatMessage,
    ChatPosted,
    CoHost,
    CoHostState,
    EventBody,
    GiftSent,
    HostsChanged,
    LiveEnded,
    Question,
    QuestionChanged,
    QuestionState,
    RoomEvent,
    RoomSettings,
    SettingsChanged,
    Statement,
    StatementIssued,
)

_BODIES: dict[str, type[Any]] = {body.__name__: body for body in (
    ChatPosted, ChatDeleted, GiftSent, QuestionChanged, StatementIssued, HostsChanged, SettingsChanged, LiveEnded)}
_NESTED: dict[str, type[Any]] = {"message": ChatMessage, "question": Question, "statement": Statement,
                                 "co_host": CoHost, "settings": RoomSettings}


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return {"us": epoch_us(value)}
    if isinstance(value, dt.timedelta):
        return {"seconds": value.total_seconds()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _plain(getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _value(kind: type[Any], data: dict[str, Any]) -> Any:
    values: dict[str, Any] = {}
    for field in dataclasses.fields(kind):
        if field.name not in data:
            continue
        raw = data[field.name]
        if isinstance(raw, dict) and set(raw) == {"us"}:
            values[field.name] = from_epoch_us(raw["us"])
        elif isinstance(raw, dict) and set(raw) == {"seconds"}:
            values[field.name] = dt.timedelta(seconds=raw["seconds"])
        elif field.name in _NESTED and isinstance(raw, dict):
            values[field.name] = _value(_NESTED[field.name], raw)
        elif field.name == "state" and kind is Question:
            values[field.name] = QuestionState(raw)
        elif field.name == "state" and kind is CoHost:
            values[field.name] = CoHostState(raw)
        elif isinstance(raw, list):
            values[field.name] = tuple(raw)
        else:
            values[field.name] = raw
    return kind(**values)


def body_to_json(body: EventBody) -> str:
    return json.dumps({"kind": type(body).__name__, **_plain(body)}, separators=(",", ":"), sort_keys=True)


def body_from_json(text: str) -> EventBody:
    data = json.loads(text)
    body: EventBody = _value(_BODIES[data.pop("kind")], data)
    return body


def event_to_bytes(event: RoomEvent) -> bytes:
    """An event whole (personal text included), for the bus."""
    return json.dumps({"live": event.live_id, "sequence": event.sequence, "at": epoch_us(event.at),
                       "body": body_to_json(event.body)}, separators=(",", ":")).encode()


def event_from_bytes(payload: bytes) -> RoomEvent:
    data = json.loads(payload)
    return RoomEvent(data["live"], data["sequence"], from_epoch_us(data["at"]), body_from_json(data["body"]))


def without_text(body: EventBody) -> EventBody:
    """The body as the event log stores it: chat and question texts live sealed elsewhere."""
    if isinstance(body, ChatPosted):
        return ChatPosted(dataclasses.replace(body.message, text=""))
    if isinstance(body, QuestionChanged):
        return QuestionChanged(dataclasses.replace(body.question, text=""))
    return body
