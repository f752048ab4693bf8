"""AdRepositoryService's gRPC handlers: proto -> use case (off the event loop) -> proto, and the
area's entry point.

The compliance server wires this area with `build(runtime)`: it registers `area.servicer` under
`ADS`, merges `area.policy`, and calls `area.on_start()` / `area.on_stop()` from its own hooks
(they start and stop the retention sweep and close the store).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from dataclasses import dataclass, field
from typing import Any

import grpc
from limelight.compliance.v1 import ads_pb2, ads_pb2_grpc

from libs.auth.principal import AgeBracket, Principal, Role
from libs.clock import Clock, utc_now
from libs.errors import PermissionDenied
from libs.kit.access import AccessPolicy, method_paths
from libs.kit.context import current_principal
from libs.kit.server import ServiceRuntime
from services.compliance.ads import messages, usecases
from services.compliance.ads.config import AdsConfig
from services.compliance.ads.store import AdRepositoryStore

logger = logging.getLogger(__name__)

ADS = "limelight.compliance.v1.AdRepositoryService"
Context = grpc.aio.ServicerContext[Any, Any]

# Anyone may search the repository and look up an entry (Art. 39); only services write to it and
# ask whether targeting is allowed (on behalf of the viewer).
POLICY = AccessPolicy(
    public=frozenset(method_paths(ADS, {"GetAd": frozenset(), "SearchAds": frozenset()})),
    roles=method_paths(ADS, {
        "RegisterAd": frozenset({Role.SERVICE}),
        "RecordAdImpressions": frozenset({Role.SERVICE}),
        "CheckAdTargeting": frozenset({Role.SERVICE}),
    }),
)


class AdRepositoryServicer(ads_pb2_grpc.AdRepositoryServiceServicer):
    def __init__(self, store: usecases.AdStore, consent: usecases.AdProfilingConsent, *, clock: Clock = utc_now) -> None:
        self._store = store
        self._consent = consent
        self._clock = clock

    async def RegisterAd(self, request: ads_pb2.RegisterAdRequest, context: Context) -> ads_pb2.RegisterAdResponse:
        ad = await asyncio.to_thread(usecases.register_ad, self._store, messages.draft_in(request.ad),
                                     request.request_id, self._clock)
        return ads_pb2.RegisterAdResponse(ad=messages.ad_out(ad))

    async def RecordAdImpressions(
        self, request: ads_pb2.RecordAdImpressionsRequest, context: Context
    ) -> ads_pb2.RecordAdImpressionsResponse:
        ad = await asyncio.to_thread(usecases.record_impressions, self._store, request.ad, request.request_id,
                                     messages.displays_in(list(request.reach)), self._clock)
        return ads_pb2.RecordAdImpressionsResponse(ad=messages.ad_out(ad))

    async def GetAd(self, request: ads_pb2.GetAdRequest, context: Context) -> ads_pb2.GetAdResponse:
        ad = await asyncio.to_thread(usecases.get_ad, self._store, request.name, self._clock)
        return ads_pb2.GetAdResponse(ad=messages.ad_out(ad))

    async def SearchAds(self, request: ads_pb2.SearchAdsRequest, context: Context) -> ads_pb2.SearchAdsResponse:
        page = await asyncio.to_thread(usecases.search_ads, self._store, messages.search_in(request),
                                       request.page_size, request.page_token, self._clock)
        return ads_pb2.SearchAdsResponse(ads=[messages.ad_out(ad) for ad in page.ads],
                                         next_page_token=page.next_page_token)

    async def CheckAdTargeting(
        self, request: ads_pb2.CheckAdTargetingRequest, context: Context
    ) -> ads_pb2.CheckAdTargetingResponse:
        viewer = _viewer(current_principal())
        if viewer is not None and viewer.subject != request.viewer:
            raise PermissionDenied(f"the call is made for {viewer.subject}, not {request.viewer}",
                                   reason="VIEWER_MISMATCH", metadata={"viewer": request.viewer})
        adult = _is_adult(viewer, self._clock().date()) if viewer is not None else None
        decision = await usecases.check_targeting(self._consent, request.viewer, adult,
                                                  messages.targeting_in(request.targeting))
        return messages.decision_out(decision)


def _viewer(principal: Principal) -> Principal | None:
    """The end user the call is made for: the propagated user, or the caller when it is a user."""
    if principal.on_behalf_of is not None:
        return principal.on_behalf_of
    return None if principal.is_service else principal


def _is_adult(viewer: Principal, today: dt.date) -> bool | None:
    """True or False when the age is known, None when it is not (then the viewer may be a minor)."""
    if viewer.age_on(today) is None and viewer.age_bracket is AgeBracket.UNKNOWN:
        return None
    return viewer.is_adult_on(today)


@dataclass
class AdRepositoryArea:
    """What the ad repository adds to the compliance server."""

    servicer: AdRepositoryServicer
    store: AdRepositoryStore
    clock: Clock
    config: AdsConfig
    policy: AccessPolicy = POLICY
    service_name: str = ADS
    _sweeper: asyncio.Task[None] | None = field(default=None, repr=False)

    async def sweep_once(self) -> int:
        removed = await asyncio.to_thread(usecases.sweep_expired, self.store, self.clock)
        if removed:
            logger.info("retention sweep removed %d ad repository entries", removed)
        return removed

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception:
                logger.exception("the ad repository's retention sweep failed; retrying next interval")
            await asyncio.sleep(self.config.retention_sweep_seconds)

    async def on_start(self) -> None:
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="ads-retention-sweep")

    async def on_stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await asyncio.to_thread(self.store.close)


def build(runtime: ServiceRuntime, *, clock: Clock = utc_now, consent: usecases.AdProfilingConsent | None = None,
          config: AdsConfig | None = None) -> AdRepositoryArea:
    """The area over `<data>/compliance/ads.db`; consent defaults to "not yet recorded" (counts as no)."""
    store = AdRepositoryStore.open(runtime.data_root)
    servicer = AdRepositoryServicer(store, consent or usecases.ConsentNotYetRecorded(), clock=clock)
    return AdRepositoryArea(servicer, store, clock, config or AdsConfig.from_environment())
