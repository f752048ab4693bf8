"""Every tunable of the affiliate service, with its default, in one typed object: `AffiliateConfig`.

From the environment (`AffiliateConfig.from_environment`):

    LIMELIGHT_AFFILIATE_LINK_KEY_ID          the key new links are signed with (default `k1`); rotating is
                                             naming a new id: its 0600 key file is created on first use and
                                             the old keys keep verifying
    LIMELIGHT_AFFILIATE_RETIRED_LINK_KEYS    comma-separated key ids whose links are refused (TOKEN_KEY_RETIRED)
    LIMELIGHT_AFFILIATE_DATACENTRE_CIDRS     comma-separated address ranges whose clicks never count (GIVT)
    LIMELIGHT_AFFILIATE_BOT_PATTERNS         comma-separated extra user-agent substrings treated as bots
    LIMELIGHT_AFFILIATE_AUDIT_SHIPPING       `on` (default) or `off` (events wait, durable, in the outbox)
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from services.affiliate.usecases.commissions import FraudPolicy


def _list(environ: Mapping[str, str], name: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in environ.get(name, "").split(",") if item.strip())


@dataclass(frozen=True)
class AffiliateConfig:
    # Tracking links: where a short code lives, and where a click goes (the product's page).
    link_base_url: str = "https://lmlt.link/"
    redirect_base_url: str = "https://shop.limelight.dev/"
    link_key_id: str = "k1"
    retired_link_keys: frozenset[str] = frozenset()
    # GIVT: address ranges of data centres (cloud providers publish theirs), extra bot patterns.
    data_centre_ranges: tuple[str, ...] = ()
    extra_bot_patterns: tuple[str, ...] = ()
    # A CPC commission waits this long before it can settle (time to spot click fraud).
    click_review_period: dt.timedelta = dt.timedelta(hours=24)
    # More counted clicks than this on one link within the window is a burst: its earnings freeze.
    burst_limit: int = 20
    burst_window: dt.timedelta = dt.timedelta(minutes=1)
    fraud: FraudPolicy = field(default_factory=FraudPolicy)
    ship_audit: bool = True

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] = os.environ) -> AffiliateConfig:
        shipping = environ.get("LIMELIGHT_AFFILIATE_AUDIT_SHIPPING", "on")
        if shipping not in ("on", "off"):
            raise ValueError(f"LIMELIGHT_AFFILIATE_AUDIT_SHIPPING must be on or off, not {shipping!r}")
        return cls(link_key_id=environ.get("LIMELIGHT_AFFILIATE_LINK_KEY_ID", "k1"),
                   retired_link_keys=frozenset(_list(environ, "LIMELIGHT_AFFILIATE_RETIRED_LINK_KEYS")),
                   data_centre_ranges=_list(environ, "LIMELIGHT_AFFILIATE_DATACENTRE_CIDRS"),
                   extra_bot_patterns=_list(environ, "LIMELIGHT_AFFILIATE_BOT_PATTERNS"),
                   ship_audit=shipping == "on")
