"""Requests that break one protovalidate rule each, kept as data for the contract tests."""

from __future__ import annotations

# One malformed request per service package, beside a well-formed twin, so a validator that
# rejected everything would fail too: (module, message, valid JSON, malformed JSON, bad field).
MALFORMED_REQUESTS: list[tuple[str, str, dict[str, object], dict[str, object], str]] = [
    (
        "limelight.ingest.v1.ingest_pb2",
        "GetVideoRequest",
        {"name": "creators/ada/videos/v1"},
        {"name": "videos/v1"},
        "name",
    ),
    (
        "limelight.ranking.v1.feed_pb2",
        "GetFeedRequest",
        {"viewer": "users/ada", "pageSize": 50},
        {"viewer": "users/ada", "pageSize": 51},
        "page_size",
    ),
    (
        "limelight.gifts.v1.gifts_pb2",
        "SendGiftRequest",
        {"requestId": "0b7e7d4a-3f0c-4b8e-9a34-2f1d7c0e9b11", "live": "creators/ada/lives/l1", "gift": "gifts/rose", "count": 1},
        {"requestId": "not-a-uuid", "live": "creators/ada/lives/l1", "gift": "gifts/rose", "count": 1},
        "request_id",
    ),
    (
        "limelight.shop.v1.inventory_pb2",
        "ReserveStockRequest",
        {"requestId": "0b7e7d4a-3f0c-4b8e-9a34-2f1d7c0e9b12", "product": "merchants/m1/products/p1", "quantity": 1, "holder": "users/ada"},
        {"requestId": "0b7e7d4a-3f0c-4b8e-9a34-2f1d7c0e9b12", "product": "merchants/m1/products/p1", "quantity": 0, "holder": "users/ada"},
        "quantity",
    ),
    (
        "limelight.affiliate.v1.commissions_pb2",
        "FreezeCommissionRequest",
        {"requestId": "0b7e7d4a-3f0c-4b8e-9a34-2f1d7c0e9b13", "name": "creators/ada/commissions/c1", "reason": "FRAUD_SUSPECTED"},
        {"requestId": "0b7e7d4a-3f0c-4b8e-9a34-2f1d7c0e9b13", "name": "creators/ada/commissions/c1", "reason": "fraud"},
        "reason",
    ),
    (
        "limelight.compliance.v1.audit_pb2",
        "AppendEventsRequest",
        {
            "events": [
                {
                    "eventId": "0b7e7d4a-3f0c-4b8e-9a34-2f1d7c0e9b14",
                    "actor": "services/gifts",
                    "action": "gifts.SendGift",
                    "outcome": "OUTCOME_SUCCEEDED",
                    "eventTime": "2026-05-01T12:00:00Z",
                }
            ]
        },
        {"events": []},
        "events",
    ),
]
