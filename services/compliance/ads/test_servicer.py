"""AdRepositoryService end to end: a real server on a loopback port, called through the generated stubs."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import grpc
import pytest
from limelight.compliance.v1 import ads_pb2, ads_pb2_grpc

from libs.auth.principal import AgeBracket, Role
from libs.timestamps import to_timestamp
from services.compliance.ads.conftest import AdsServer, Metadata, MovableClock, on_behalf_of, token


def full_ad() -> ads_pb2.Ad:
    return ads_pb2.Ad(
        kind=ads_pb2.AD_KIND_COMMERCIAL_CONTENT, content="creators/ada/videos/v1",
        summary="Werbung | Morning routine with the Glowlab serum", advertiser="Glowlab GmbH",
        payer="Glowlab Holding", brand="Glowlab Serum", creator="creators/ada", found_by_engine=True,
        targeting=ads_pb2.AdTargeting(member_states=["DE", "AT"], min_age=18, max_age=35, interests=["skincare"],
                                      uses_profiling=True, excluded_member_states=["FR"],
                                      excluded_interests=["gambling"]))


async def register(stub: ads_pb2_grpc.AdRepositoryServiceAsyncStub, metadata: Metadata, ad: ads_pb2.Ad | None = None) -> ads_pb2.Ad:
    response = await stub.RegisterAd(ads_pb2.RegisterAdRequest(request_id=str(uuid.uuid4()), ad=ad or full_ad()),
                                     metadata=metadata)
    return response.ad


def day(moment: dt.datetime) -> dt.datetime:
    return dt.datetime.combine(moment.date(), dt.time(), dt.UTC)


async def test_a_search_answers_with_every_art_39_field_filled(
    ads_stub: ads_pb2_grpc.AdRepositoryServiceAsyncStub, as_service: Metadata, clock: MovableClock
) -> None:
    ad = await register(ads_stub, as_service)
    await ads_stub.RecordAdImpressions(ads_pb2.RecordAdImpressionsRequest(
        ad=ad.name, request_id=str(uuid.uuid4()), reach=[
            ads_pb2.AdReach(member_state="DE", day=to_timestamp(day(clock.now)), impressions=1200),
            ads_pb2.AdReach(member_state="AT", day=to_timestamp(day(clock.now)), impressions=80)]), metadata=as_service)

    found = await ads_stub.SearchAds(ads_pb2.SearchAdsRequest(advertiser_query="glowlab", member_state="DE"))
    assert [entry.name for entry in found.ads] == [ad.name]
    entry = found.ads[0]
    for name in ("name", "kind", "content", "summary", "advertiser", "payer", "targeting", "first_display_time",
                 "last_display_time", "reach", "retain_until", "create_time", "brand", "creator", "found_by_engine",
                 "total_reach", "targeted"):
        assert entry.HasField(name) if name.endswith("time") or name in ("targeting", "retain_until") else \
            getattr(entry, name), name
    assert (entry.advertiser, entry.payer, entry.total_reach) == ("Glowlab GmbH", "Glowlab Holding", 1280)
    assert {r.member_state: r.impressions for r in entry.reach} == {"AT": 80, "DE": 1200}
    assert list(entry.targeting.excluded_member_states) == ["FR"] and entry.targeted
    assert "user" not in str(entry).lower()  # reach is counts: no viewer appears anywhere


async def test_the_repository_is_public_but_only_services_write(
    ads_stub: ads_pb2_grpc.AdRepositoryServiceAsyncStub, as_service: Metadata, tmp_path: Path
) -> None:
    ad = await register(ads_stub, as_service)
    assert (await ads_stub.GetAd(ads_pb2.GetAdRequest(name=ad.name))).ad.advertiser == "Glowlab GmbH"
    viewer = (("authorization", f"Bearer {token(tmp_path, 'users/alice', Role.VIEWER)}"),)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await register(ads_stub, viewer)
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED


async def test_contradictory_targeting_is_invalid_argument(ads_stub: ads_pb2_grpc.AdRepositoryServiceAsyncStub, as_service: Metadata) -> None:
    ad = full_ad()
    ad.targeting.min_age = 13
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await register(ads_stub, as_service, ad)
    assert raised.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "ad.targeting.min_age" in (raised.value.details() or "")


async def test_the_retention_sweep_removes_an_entry_a_year_after_its_last_display(
    ads_stub: ads_pb2_grpc.AdRepositoryServiceAsyncStub, as_service: Metadata, ads_server: AdsServer, clock: MovableClock
) -> None:
    ad = await register(ads_stub, as_service)
    clock.now = ad.retain_until.ToDatetime(tzinfo=dt.UTC) + dt.timedelta(seconds=1)
    assert await ads_server.area.sweep_once() == 1
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ads_stub.GetAd(ads_pb2.GetAdRequest(name=ad.name))
    assert raised.value.code() is grpc.StatusCode.NOT_FOUND


PROFILED = ads_pb2.AdTargeting(min_age=18, interests=["skincare"], uses_profiling=True)


@pytest.mark.parametrize(("age", "bracket", "refusals"), [
    (15, AgeBracket.UNKNOWN, [ads_pb2.TARGETING_REFUSAL_VIEWER_IS_MINOR, ads_pb2.TARGETING_REFUSAL_NO_CONSENT]),
    (None, AgeBracket.FROM_16_TO_17, [ads_pb2.TARGETING_REFUSAL_VIEWER_IS_MINOR, ads_pb2.TARGETING_REFUSAL_NO_CONSENT]),
    (None, AgeBracket.UNKNOWN, [ads_pb2.TARGETING_REFUSAL_VIEWER_AGE_UNKNOWN, ads_pb2.TARGETING_REFUSAL_NO_CONSENT]),
    # Consent does not exist yet: "unknown" counts as no, so even an adult is refused profiling.
    (30, AgeBracket.UNKNOWN, [ads_pb2.TARGETING_REFUSAL_NO_CONSENT]),
])
async def test_profiling_is_refused_for_minors_unknown_ages_and_without_consent(
    ads_stub: ads_pb2_grpc.AdRepositoryServiceAsyncStub, tmp_path: Path, clock: MovableClock, age: int | None, bracket: AgeBracket,
    refusals: list[int],
) -> None:
    birth = clock.now.date().replace(year=clock.now.year - age) if age is not None else None
    viewer = token(tmp_path, "users/mia", Role.VIEWER, birth_date=birth, age_bracket=bracket)
    response = await ads_stub.CheckAdTargeting(ads_pb2.CheckAdTargetingRequest(viewer="users/mia", targeting=PROFILED),
                                               metadata=on_behalf_of(tmp_path, viewer))
    assert not response.permitted and list(response.refusals) == refusals
    assert len(response.explanations) == len(refusals)


async def test_contextual_targeting_is_permitted_and_another_viewer_is_refused(
    ads_stub: ads_pb2_grpc.AdRepositoryServiceAsyncStub, tmp_path: Path
) -> None:
    viewer = token(tmp_path, "users/mia", Role.VIEWER, age_bracket=AgeBracket.FROM_7_TO_15)
    contextual = ads_pb2.CheckAdTargetingRequest(viewer="users/mia", targeting=ads_pb2.AdTargeting(member_states=["DE"]))
    assert (await ads_stub.CheckAdTargeting(contextual, metadata=on_behalf_of(tmp_path, viewer))).permitted
    contextual.viewer = "users/noah"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await ads_stub.CheckAdTargeting(contextual, metadata=on_behalf_of(tmp_path, viewer))
    assert raised.value.code() is grpc.StatusCode.PERMISSION_DENIED
