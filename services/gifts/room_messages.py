"""The room's domain values as RoomService messages (and back, for the few inputs that need it)."""

from __future__ import annotations

from google.protobuf import duration_pb2
from limelight.gifts.v1 import gifts_pb2, room_pb2

from libs.timestamps import to_timestamp
from services.gifts.model.names import catalog_gift_name, gift_transfer_name, live_name, user_name
from services.gifts.model.room import (
    Ban,
    ChatDeleted,
    ChatMessage,
    ChatPosted,
    CoHost,
    CoHostState,
    GiftSent,
    HostsChanged,
    LiveEnded,
    Moderator,
    Pin,
    PinsChanged,
    Question,
    QuestionChanged,
    QuestionState,
    RoomEvent,
    RoomSettings,
    SettingsChanged,
    Statement,
    StatementIssued,
)

QUESTION_STATES = {QuestionState.OPEN: room_pb2.QUESTION_STATE_OPEN,
                   QuestionState.ANSWERING: room_pb2.QUESTION_STATE_ANSWERING,
                   QuestionState.ANSWERED: room_pb2.QUESTION_STATE_ANSWERED,
                   QuestionState.DISMISSED: room_pb2.QUESTION_STATE_DISMISSED}
QUESTION_STATES_IN = {value: key for key, value in QUESTION_STATES.items()}
_CO_HOST_STATES = {CoHostState.INVITED: room_pb2.CO_HOST_STATE_INVITED,
                   CoHostState.ACTIVE: room_pb2.CO_HOST_STATE_ACTIVE,
                   CoHostState.ENDED: room_pb2.CO_HOST_STATE_ENDED}


def chat_message_name(message: ChatMessage) -> str:
    return f"{live_name(message.host, message.live_id)}/chatMessages/{message.message_id}"


def chat_message(message: ChatMessage) -> room_pb2.ChatMessage:
    return room_pb2.ChatMessage(name=chat_message_name(message), author=user_name(message.author),
                                text="" if message.deleted else message.text,
                                create_time=to_timestamp(message.sent_at), deleted=message.deleted)


def question(value: Question) -> room_pb2.Question:
    return room_pb2.Question(name=f"{live_name(value.host, value.live_id)}/questions/{value.question_id}",
                             author=user_name(value.author), text=value.text, state=QUESTION_STATES[value.state],
                             upvote_count=value.upvotes, create_time=to_timestamp(value.submitted_at))


def statement(value: Statement) -> room_pb2.StatementOfReasons:
    message = room_pb2.StatementOfReasons(decision=value.decision, resource=value.resource, facts=value.facts,
                                          ground=value.ground, automated=value.automated,
                                          decided_by=value.decided_by, redress=value.redress)
    if value.ends_at is not None:
        message.end_time.CopyFrom(to_timestamp(value.ends_at))
    return message


def room_settings(host: str, value: RoomSettings) -> room_pb2.RoomSettings:
    slow_mode = duration_pb2.Duration()
    slow_mode.FromTimedelta(value.slow_mode)
    return room_pb2.RoomSettings(name=f"{live_name(host, value.live_id)}/roomSettings", slow_mode=slow_mode,
                                 age_restricted=value.age_restricted)


def co_host(value: CoHost) -> room_pb2.CoHost:
    message = room_pb2.CoHost(name=f"{live_name(value.host, value.live_id)}/coHosts/{value.co_host}",
                              creator=f"creators/{value.co_host}", state=_CO_HOST_STATES[value.state],
                              invite_time=to_timestamp(value.invited_at))
    if value.started_at is not None:
        message.start_time.CopyFrom(to_timestamp(value.started_at))
    if value.ended_at is not None:
        message.end_time.CopyFrom(to_timestamp(value.ended_at))
    return message


def moderator(value: Moderator) -> room_pb2.Moderator:
    return room_pb2.Moderator(name=f"creators/{value.creator}/moderators/{value.user}", user=user_name(value.user),
                              create_time=to_timestamp(value.appointed_at))


def ban(value: Ban) -> room_pb2.Ban:
    return room_pb2.Ban(name=f"creators/{value.creator}/bans/{value.user}", user=user_name(value.user),
                        reason=value.reason, banned_by=user_name(value.banned_by),
                        create_time=to_timestamp(value.banned_at))


def gift_transfer(live_id: str, gift: GiftSent) -> gifts_pb2.GiftTransfer:
    return gifts_pb2.GiftTransfer(
        name=gift_transfer_name(gift.creator, live_id, gift.gift_id), sequence=gift.feed_sequence,
        sender=user_name(gift.sender), gift=catalog_gift_name(gift.catalog_gift), count=gift.count,
        coins_spent=gift.coins, diamonds_credited=gift.diamonds, platform_fee_coins=gift.fee_coins,
        state=gifts_pb2.GIFT_TRANSFER_STATE_POSTED, create_time=to_timestamp(gift.sent_at))


def pins(values: tuple[Pin, ...]) -> room_pb2.RoomPins:
    return room_pb2.RoomPins(pins=[room_pb2.RoomPin(pin=pin.pin, product=pin.product,
                                                    disclosure_label=pin.disclosure_label) for pin in values])


def room_event(event: RoomEvent, host: str) -> room_pb2.RoomEvent | None:
    """The event as viewers receive it; None for one that is only a signal to the stream (an end)."""
    message = room_pb2.RoomEvent(sequence=event.sequence, event_time=to_timestamp(event.at))
    body = event.body
    match body:
        case ChatPosted():
            message.chat_message.CopyFrom(chat_message(body.message))
        case ChatDeleted():
            message.chat_message_deleted = f"{live_name(host, event.live_id)}/chatMessages/{body.message_id}"
        case GiftSent():
            message.gift_transfer.CopyFrom(gift_transfer(event.live_id, body))
        case QuestionChanged():
            message.question.CopyFrom(question(body.question))
        case StatementIssued():
            message.statement_of_reasons.CopyFrom(statement(body.statement))
        case HostsChanged():
            message.hosts.hosts.extend(f"creators/{creator}" for creator in body.hosts)
            message.hosts.co_host.CopyFrom(co_host(body.co_host))
        case SettingsChanged():
            message.room_settings.CopyFrom(room_settings(host, body.settings))
        case PinsChanged():
            message.pins.CopyFrom(pins(body.pins))
        case LiveEnded():
            return None
    return message
