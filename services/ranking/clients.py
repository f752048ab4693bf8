"""Ranking's calls to other services: the adapters of its ports.

- `ComplianceConsent` (`ConsentChecker`): the viewer's consent to personalised content and to
  personalised ads, through `libs.consent.ConsentCache` (compliance's CheckConsent, cached and
  invalidated by its change stream). Compliance unreachable means no consent: the feed is
  then non-personalised, never an error.
- `NoConsent`: nobody has consented (LIMELIGHT_RANKING_CONSENT=none).
"""

from __future__ import annotations

import logging

import grpc
from limelight.compliance.v1 import consent_pb2

from libs.consent.cache import ConsentCache

logger = logging.getLogger(__name__)


class ComplianceConsent:
    def __init__(self, cache: ConsentCache) -> None:
        self._cache = cache

    async def _permitted(self, user: str, purpose: int) -> bool:
        subject = f"users/{user}"
        cached = self._cache.cached(subject, purpose)
        if cached is not None:
            return cached
        try:
            return await self._cache.permitted(subject, purpose)
        except grpc.aio.AioRpcError as error:
            logger.warning("consent check for %s failed (%s): treated as no consent", subject, error.code().name)
            return False

    async def personalised_content(self, user: str) -> bool:
        return await self._permitted(user, consent_pb2.CONSENT_PURPOSE_PERSONALISED_CONTENT)

    async def personalised_ads(self, user: str) -> bool:
        return await self._permitted(user, consent_pb2.CONSENT_PURPOSE_PERSONALISED_ADS)


class NoConsent:
    async def personalised_content(self, user: str) -> bool:
        return False

    async def personalised_ads(self, user: str) -> bool:
        return False
