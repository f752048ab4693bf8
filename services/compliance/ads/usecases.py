"""The ad repository's use cases, over the ports declared here: the store and the consent answer.

Store calls block (SQLite, fsync'd), so the servicer runs these functions off the event loop.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from libs.clock import Clock
from libs.errors import NotFound
from libs.pagination import PageTokens, page_size
from services.compliance.ads.model import (
    Ad,
    AdDraft,
    AdSearch,
    ConsentAnswer,
    Displays,
    Targeting,
    TargetingDecision,
    check_displays,
    decide_targeting,
    displays_fingerprint,
)

DEFAULT_SEARCH_PAGE = 100
SEARCH_PAGES = PageTokens("compliance.SearchAds")
_AD_NAMES = uuid.UUID("6f1c4c1e-3f0e-4d7e-9a57-2d4b2e3f8a10")


class AdStore(Protocol):
    """What the repository needs from storage; each call is one transaction."""

    def register(self, ad: Ad, request_id: str, fingerprint: str) -> Ad:
        """Store `ad` under `request_id`, or return the entry stored first under it (same
        fingerprint); a different fingerprint raises AlreadyExists (REQUEST_ID_REUSED)."""
        ...

    def add_displays(self, name: str, request_id: str, fingerprint: str, rows: Sequence[Displays],
                     now: dt.datetime) -> Ad:
        """Add `rows` once per `request_id`; NotFound (AD_NOT_FOUND) for an unknown or expired entry."""
        ...

    def get(self, name: str, now: dt.datetime) -> Ad | None: ...

    def search(self, search: AdSearch, now: dt.datetime, after: tuple[int, str] | None, limit: int) -> list[Ad]:
        """Entries matching `search`, most recently shown first, after the position (sort key, name)."""
        ...

    def delete_expired(self, now: dt.datetime) -> int: ...


class AdProfilingConsent(Protocol):
    """Whether a viewer consented to personalised ads (TCF purposes 3-4). Declared here, answered in the
    compliance process by the consent area (`consent.servicer.AdProfilingAnswers`)."""

    async def ad_profiling(self, viewer: str) -> ConsentAnswer: ...


class ConsentNotYetRecorded:
    """The default when the ad repository runs without the consent area (its own tests): "unknown"."""

    async def ad_profiling(self, viewer: str) -> ConsentAnswer:
        return ConsentAnswer.UNKNOWN


def ad_name(request_id: str) -> str:
    """The entry's name follows from its request id, so a retried registration names the same entry."""
    return f"ads/{uuid.uuid5(_AD_NAMES, request_id).hex}"


def register_ad(store: AdStore, draft: AdDraft, request_id: str, clock: Clock) -> Ad:
    draft.targeting.check("ad.targeting")
    ad = Ad(name=ad_name(request_id), draft=draft, create_time=clock())
    return store.register(ad, request_id, draft.fingerprint())


def record_impressions(store: AdStore, name: str, request_id: str, rows: Sequence[Displays], clock: Clock) -> Ad:
    now = clock()
    check_displays(rows, now)
    return store.add_displays(name, request_id, displays_fingerprint(name, rows), rows, now)


def get_ad(store: AdStore, name: str, clock: Clock) -> Ad:
    ad = store.get(name, clock())
    if ad is None:
        raise NotFound(f"{name} is not in the ad repository (or its retention has ended)", resource_name=name,
                       reason="AD_NOT_FOUND")
    return ad


@dataclass(frozen=True)
class AdPage:
    ads: list[Ad]
    next_page_token: str


def sort_key(ad: Ad) -> int:
    """Most recently shown first; never-shown entries last."""
    return int(ad.last_display.timestamp() * 1_000_000) if ad.last_display else 0


def search_ads(store: AdStore, search: AdSearch, requested_size: int, page_token: str, clock: Clock) -> AdPage:
    bound_to = search.key()
    position = SEARCH_PAGES.decode(page_token, bound_to=bound_to, shape=(int, str))
    after = (int(position[0]), str(position[1])) if position else None
    size = page_size(requested_size, default=DEFAULT_SEARCH_PAGE)
    found = store.search(search, clock(), after, size + 1)
    page, more = found[:size], len(found) > size
    token = SEARCH_PAGES.encode(sort_key(page[-1]), page[-1].name, bound_to=bound_to) if more else ""
    return AdPage(page, token)


def sweep_expired(store: AdStore, clock: Clock) -> int:
    """Delete every entry whose retention (one year after its last display) has ended."""
    return store.delete_expired(clock())


async def check_targeting(consent: AdProfilingConsent, viewer: str, viewer_is_adult: bool | None,
                          targeting: Targeting) -> TargetingDecision:
    targeting.check("targeting")
    answer = await consent.ad_profiling(viewer) if targeting.uses_profiling else ConsentAnswer.UNKNOWN
    return decide_targeting(targeting, viewer_is_adult=viewer_is_adult, consent=answer)
