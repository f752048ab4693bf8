"""The one adapter to affiliate's CommissionService (protos/limelight/affiliate/v1/commissions.proto,
owned by affiliate): order events stored in the shop's delivery outbox, as shop-side JSON, become
`AttributeOrder` and `RecordOrderEvent` requests here and nowhere else, so a change to that
contract touches this module only."""

from __future__ import annotations

import uuid

from google.protobuf.timestamp_pb2 import Timestamp
from limelight.affiliate.v1 import commissions_pb2, commissions_pb2_grpc

from libs.kit.clients import ServiceClients
from libs.timestamps import timestamp_from_us

ATTRIBUTE_ORDER = "affiliate.attribute_order"
ORDER_EVENT = "affiliate.order_event"

_EVENT_TYPES = {
    "FULFILLED": commissions_pb2.ORDER_EVENT_TYPE_FULFILLED,
    "CANCELLED": commissions_pb2.ORDER_EVENT_TYPE_CANCELLED,
    "REFUNDED": commissions_pb2.ORDER_EVENT_TYPE_REFUNDED,
}


def _request_id(*parts: object) -> str:
    """The same event always carries the same request id, so a resend has one effect."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, "shop-affiliate:" + "|".join(map(str, parts))))


def _stamp(micros: object) -> Timestamp:
    assert isinstance(micros, int)
    return timestamp_from_us(micros)


def attribute_order_request(payload: dict[str, object]) -> commissions_pb2.AttributeOrderRequest:
    lines = payload["lines"]
    assert isinstance(lines, list)
    return commissions_pb2.AttributeOrderRequest(
        request_id=_request_id(payload["order"], "attribute"), order=str(payload["order"]),
        merchant=str(payload["merchant"]), visitor_id=str(payload["visitor_id"]),
        lines=[commissions_pb2.AttributedLine(product=product, paid_minor=paid) for product, paid in lines],
        currency_code=str(payload["currency_code"]), order_time=_stamp(payload["order_time_us"]))


def order_event_request(payload: dict[str, object]) -> commissions_pb2.RecordOrderEventRequest:
    refunded = payload["refunded_paid_minor"]
    assert isinstance(refunded, int)
    return commissions_pb2.RecordOrderEventRequest(
        request_id=_request_id(payload["order"], payload["type"], payload["key"]), order=str(payload["order"]),
        type=_EVENT_TYPES[str(payload["type"])], refunded_paid_minor=refunded,
        event_time=_stamp(payload["event_time_us"]))


class AffiliateClient:
    def __init__(self, clients: ServiceClients, *, timeout: float = 5.0) -> None:
        self._clients = clients
        self._timeout = timeout

    async def send(self, kind: str, payload: dict[str, object]) -> None:
        stub = self._clients.stub("affiliate", commissions_pb2_grpc.CommissionServiceStub)
        if kind == ATTRIBUTE_ORDER:
            await stub.AttributeOrder(attribute_order_request(payload), timeout=self._timeout)
        else:
            await stub.RecordOrderEvent(order_event_request(payload), timeout=self._timeout)
