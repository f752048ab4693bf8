"""Affiliate's calls to compliance, through the kit's clients: the adapters of two ports.

- `ConsentTracking` (`TrackingConsent`): CheckConsent through `libs.consent`'s cache; any failure is "no".
- `ComplianceDisclosure` (`DisclosureReview`): content with a link to DisclosureService.EvaluateDisclosure.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import grpc
from limelight.compliance.v1 import consent_pb2, disclosure_pb2, disclosure_pb2_grpc

from libs.consent.cache import ConsentCache
from libs.errors import Unavailable
from libs.kit.clients import ServiceClients
from services.affiliate.model.links import TrackingLink

logger = logging.getLogger(__name__)

AFFILIATE_TRACKING = consent_pb2.CONSENT_PURPOSE_AFFILIATE_TRACKING
DISCLOSURE_TIMEOUT_S = 5.0


class ConsentTracking:
    """One CheckConsent per user however many of their clicks miss the cache together (a visitor's
    first clicks arrive in a burst)."""

    def __init__(self, cache: ConsentCache) -> None:
        self._cache = cache
        self._asking: dict[str, asyncio.Future[bool]] = {}

    def cached(self, user: str) -> bool | None:
        return self._cache.cached(user, AFFILIATE_TRACKING)

    async def permits(self, user: str) -> bool:
        asking = self._asking.get(user)
        if asking is not None:
            return await asyncio.shield(asking)
        asking = asyncio.get_running_loop().create_future()
        self._asking[user] = asking
        try:
            answer = await self._cache.permitted(user, AFFILIATE_TRACKING)
        except grpc.aio.AioRpcError as error:
            logger.warning("CheckConsent failed (%s): the click is not attributed", error.code().name)
            answer = False
        except BaseException:
            asking.set_result(False)  # the callers waiting with us hear "no", as for any failure
            raise
        finally:
            del self._asking[user]
        asking.set_result(answer)
        return answer


class ComplianceDisclosure:
    def __init__(self, clients: ServiceClients) -> None:
        self._clients = clients

    async def review(self, link: TrackingLink, content: str, caption: str, hashtags: Sequence[str], brand_name: str,
                     label_text: str, label_placement: int) -> object:
        stub = self._clients.stub("compliance", disclosure_pb2_grpc.DisclosureServiceStub)
        request = disclosure_pb2.EvaluateDisclosureRequest(
            market=disclosure_pb2.MARKET_GERMANY,
            content=disclosure_pb2.DisclosureContent(
                content=content, caption=caption, hashtags=list(hashtags), affiliate_links=[link.name],
                product_tags=[link.product] if link.product else [], label_text=label_text,
                label_placement=label_placement,  # type: ignore[arg-type]
                declaration=disclosure_pb2.CommercialDeclaration(
                    relationship=disclosure_pb2.COMMERCIAL_RELATIONSHIP_AFFILIATE, brand_name=brand_name)))
        try:
            return await stub.EvaluateDisclosure(request, timeout=DISCLOSURE_TIMEOUT_S)
        except grpc.aio.AioRpcError as error:
            raise Unavailable(f"compliance answered {error.code().name}", reason="DISCLOSURE_UNAVAILABLE") from None
