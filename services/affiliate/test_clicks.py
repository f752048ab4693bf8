"""RecordClick against the real servers: each kind of click that must not count says why."""

from __future__ import annotations

import datetime as dt

import grpc
import pytest
from google.rpc import error_details_pb2
from limelight.affiliate.v1 import links_pb2

from libs.kit.testing import error_info, status_detail
from services.affiliate.conftest import Affiliate, fresh, now


async def _setup(affiliate: Affiliate, *, cpc: int = 0, cap: int = 0) -> tuple[str, str, links_pb2.TrackingLink]:
    merchant, creator = fresh("m"), fresh("c")
    program = await affiliate.program(merchant, cpc=cpc, cap=cap)
    return merchant, creator, await affiliate.link(creator, program, f"merchants/{merchant}/products/shoe")


def _reason(click: links_pb2.Click) -> str:
    return links_pb2.ClickFilterReason.Name(click.filter_reason)


async def test_a_consented_browser_click_counts_once_per_hour_and_issues_a_visitor_id(affiliate: Affiliate) -> None:
    _, _, link = await _setup(affiliate)
    buyer = fresh("u")
    await affiliate.grant_tracking(buyer)
    first = await affiliate.click(link.token, user=buyer)
    assert first.counted and first.visitor_id and first.redirect_url.endswith(link.product)
    again = await affiliate.click(link.token, user=buyer, visitor_id=first.visitor_id,
                                  at=now() + dt.timedelta(minutes=30))
    assert (again.counted, _reason(again)) == (False, "CLICK_FILTER_REASON_DUPLICATE_WITHIN_HOUR")
    later = await affiliate.click(link.token, user=buyer, visitor_id=first.visitor_id,
                                  at=now() + dt.timedelta(minutes=61))
    assert later.counted


@pytest.mark.parametrize(("user_agent", "purpose", "client_ip", "reason"), [
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", "", "198.51.100.1", "BOT"),
    ("facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)", "", "198.51.100.1", "BOT"),
    ("curl/8.5.0", "", "198.51.100.1", "NON_BROWSER_AGENT"),
    ("", "", "198.51.100.1", "NON_BROWSER_AGENT"),
    ("python-requests/2.32", "", "198.51.100.1", "NON_BROWSER_AGENT"),
    ("Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "prefetch", "198.51.100.1", "PREFETCH"),
    ("Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0", "", "203.0.113.9", "DATA_CENTRE_ADDRESS"),
])
async def test_invalid_traffic_is_recorded_not_counted_with_its_reason(affiliate: Affiliate, user_agent: str,
                                                                       purpose: str, client_ip: str, reason: str) -> None:
    _, _, link = await _setup(affiliate)
    buyer = fresh("u")
    await affiliate.grant_tracking(buyer)
    click = await affiliate.click(link.token, user=buyer, user_agent=user_agent, purpose=purpose, client_ip=client_ip)
    assert (click.counted, _reason(click), click.visitor_id) == (False, f"CLICK_FILTER_REASON_{reason}", "")
    assert click.redirect_url, "a filtered click is still redirected"


async def test_a_creator_clicking_their_own_link_never_counts(affiliate: Affiliate) -> None:
    _, creator, link = await _setup(affiliate)
    await affiliate.grant_tracking(creator)
    click = await affiliate.click(link.token, user=creator)
    assert (click.counted, _reason(click)) == (False, "CLICK_FILTER_REASON_SELF_CLICK")


async def test_without_tracking_consent_the_visitor_is_redirected_but_not_attributed(affiliate: Affiliate) -> None:
    _, _, link = await _setup(affiliate)
    signed_in = await affiliate.click(link.token, user=fresh("u"))
    anonymous = await affiliate.click(link.token)
    for click in (signed_in, anonymous):
        assert (click.counted, _reason(click), click.visitor_id) == (False, "CLICK_FILTER_REASON_NO_TRACKING_CONSENT", "")
        assert click.redirect_url


async def test_a_forged_or_altered_token_is_refused_on_the_token_field(affiliate: Affiliate) -> None:
    _, _, link = await _setup(affiliate)
    version, key_id, payload, mac = link.token.split(".")
    other = await _setup(affiliate)
    forged = [f"{version}.{key_id}.{other[2].token.split('.')[2]}.{mac}",  # another link's payload, this signature
              f"{version}.{key_id}.{payload}.{mac[:-2]}AA", "v1.k1.bm9wZQ.bm9wZQ", "not-a-token-at-all-x"]
    for token in forged:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await affiliate.click(token, user=fresh("u"))
        assert refused.value.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert error_info(refused.value).reason == "TOKEN_INVALID" or \
            status_detail(refused.value, error_details_pb2.BadRequest).field_violations[0].reason == "TOKEN_INVALID"
        assert status_detail(refused.value, error_details_pb2.BadRequest).field_violations[0].field == "token"


async def test_a_retried_click_counts_once_and_a_reused_request_id_is_refused(affiliate: Affiliate) -> None:
    _, _, link = await _setup(affiliate)
    buyer = fresh("u")
    await affiliate.grant_tracking(buyer)
    at = now()
    rid = "0b5e2f7c-55a1-4d1e-9f0c-3f1d6b9a7e21"
    first = await affiliate.click(link.token, user=buyer, at=at, rid=rid)
    retry = await affiliate.click(link.token, user=buyer, at=at, rid=rid)
    assert retry.name == first.name and retry.counted
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await affiliate.click(link.token, user=fresh("u"), at=at, rid=rid)
    assert refused.value.code() is grpc.StatusCode.ALREADY_EXISTS
    assert error_info(refused.value).reason == "REQUEST_ID_REUSED"


async def test_cpc_is_paid_per_counted_click_up_to_the_daily_cap_per_creator(affiliate: Affiliate) -> None:
    _, _, link = await _setup(affiliate, cpc=30, cap=70)
    earned: list[int] = []
    for _ in range(4):
        buyer = fresh("u")
        await affiliate.grant_tracking(buyer)
        earned.append((await affiliate.click(link.token, user=buyer, client_ip=f"198.51.100.{len(earned) + 20}")).cpc_earned_minor)
    assert earned == [30, 30, 10, 0]
