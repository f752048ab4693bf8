"""The shop's calls to gifts and compliance, through the kit's clients: adapters of the ports
`LiveSessions` and `Disclosure` (usecases/ports.py), and the ad repository registration the delivery
shipper makes for each pin (`AdRepositoryClient`)."""

from __future__ import annotations

import datetime as dt
import logging
import uuid

import grpc
from limelight.compliance.v1 import ads_pb2, ads_pb2_grpc, disclosure_pb2, disclosure_pb2_grpc
from limelight.gifts.v1 import live_pb2, live_pb2_grpc

from libs.errors import NotFound, Unavailable
from libs.kit.clients import ServiceClients
from services.shop.model import DEFAULT_DISCLOSURE_LABEL

logger = logging.getLogger(__name__)

# Answers that mean "ask again later", not "no".
NOT_YET = frozenset({grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE,
                     grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.RESOURCE_EXHAUSTED})


class GiftsLiveSessions:
    """Whether a LIVE is running, from gifts' LiveService."""

    def __init__(self, clients: ServiceClients, *, timeout: float = 3.0) -> None:
        self._clients = clients
        self._timeout = timeout

    async def live_until(self, live: str) -> dt.datetime | None:
        stub = self._clients.stub("gifts", live_pb2_grpc.LiveServiceStub)
        try:
            response = await stub.GetLiveSession(live_pb2.GetLiveSessionRequest(name=live), timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() is grpc.StatusCode.NOT_FOUND:
                raise NotFound(f"no LIVE {live}", resource_name=live, reason="LIVE_NOT_FOUND") from None
            raise Unavailable(f"gifts answered {error.code().name} about {live}", reason="LIVE_UNKNOWN") from None
        session = response.live_session
        if session.state != live_pb2.LIVE_SESSION_STATE_LIVE:
            return None
        return session.max_end_time.ToDatetime(tzinfo=dt.UTC)


class ComplianceDisclosure:
    """The label the disclosure engine requires for a product pinned in a LIVE."""

    def __init__(self, clients: ServiceClients, *, timeout: float = 2.0) -> None:
        self._clients = clients
        self._timeout = timeout

    async def label(self, live: str, product: str) -> str | None:
        stub = self._clients.stub("compliance", disclosure_pb2_grpc.DisclosureServiceStub)
        request = disclosure_pb2.EvaluateDisclosureRequest(
            content=disclosure_pb2.DisclosureContent(
                content=live, product_tags=[product], label_text=DEFAULT_DISCLOSURE_LABEL,
                label_placement=disclosure_pb2.LABEL_PLACEMENT_BEFORE_CONTENT,
                # The pin itself is the commercial element: the engine finds it from the tag.
                declaration=disclosure_pb2.CommercialDeclaration(
                    relationship=disclosure_pb2.COMMERCIAL_RELATIONSHIP_NONE)),
            market=disclosure_pb2.MARKET_GERMANY)
        try:
            response = await stub.EvaluateDisclosure(request, timeout=self._timeout)
        except grpc.aio.AioRpcError as error:
            if error.code() not in NOT_YET:
                logger.error("the disclosure engine refused a pin of %s: %s %s", product, error.code().name,
                             error.details())
            return None
        return response.required_label or None


class AdRepositoryClient:
    """Registers a pin in the DSA ad repository as the creator's commercial content (a product
    placement); the request id is derived from the pin's name, so a resend is the same entry."""

    def __init__(self, clients: ServiceClients, *, timeout: float = 5.0) -> None:
        self._clients = clients
        self._timeout = timeout

    async def register(self, payload: dict[str, object]) -> str:
        stub = self._clients.stub("compliance", ads_pb2_grpc.AdRepositoryServiceStub)
        creator = f"creators/{payload['creator']}"
        request = ads_pb2.RegisterAdRequest(
            request_id=str(uuid.uuid5(uuid.NAMESPACE_URL, str(payload["pin"]))),
            ad=ads_pb2.Ad(kind=ads_pb2.AD_KIND_PRODUCT_PLACEMENT, content=str(payload["live"]),
                          summary=f"Pinned product: {payload['title']}"[:2000], advertiser=creator,
                          brand=f"merchants/{payload['merchant']}"[:200], creator=creator,
                          targeting=ads_pb2.AdTargeting()))
        response = await stub.RegisterAd(request, timeout=self._timeout)
        return response.ad.name
