"""AdRepositoryService messages <-> the ad repository's domain."""

from __future__ import annotations

from limelight.compliance.v1 import ads_pb2

from libs.timestamps import from_timestamp, to_timestamp
from services.compliance.ads.model import Ad, AdDraft, AdKind, AdSearch, Displays, Targeting, TargetingDecision


def targeting_in(message: ads_pb2.AdTargeting) -> Targeting:
    return Targeting(
        member_states=tuple(message.member_states), min_age=message.min_age, max_age=message.max_age,
        interests=tuple(message.interests), uses_profiling=message.uses_profiling,
        excluded_member_states=tuple(message.excluded_member_states),
        excluded_interests=tuple(message.excluded_interests))


def targeting_out(targeting: Targeting) -> ads_pb2.AdTargeting:
    return ads_pb2.AdTargeting(
        member_states=targeting.member_states, min_age=targeting.min_age, max_age=targeting.max_age,
        interests=targeting.interests, uses_profiling=targeting.uses_profiling,
        excluded_member_states=targeting.excluded_member_states, excluded_interests=targeting.excluded_interests)


def draft_in(message: ads_pb2.Ad) -> AdDraft:
    return AdDraft(
        kind=AdKind[ads_pb2.AdKind.Name(message.kind).removeprefix("AD_KIND_")], content=message.content,
        summary=message.summary, advertiser=message.advertiser, payer=message.payer,
        targeting=targeting_in(message.targeting), brand=message.brand, creator=message.creator,
        found_by_engine=message.found_by_engine)


def ad_out(ad: Ad) -> ads_pb2.Ad:
    draft = ad.draft
    message = ads_pb2.Ad(
        name=ad.name, kind="AD_KIND_" + draft.kind.value, content=draft.content,
        summary=draft.summary, advertiser=draft.advertiser, payer=draft.paid_by,
        targeting=targeting_out(draft.targeting), brand=draft.brand, creator=draft.creator,
        found_by_engine=draft.found_by_engine, total_reach=ad.total_reach, targeted=draft.targeting.targeted,
        reach=[ads_pb2.AdMemberStateReach(member_state=state, impressions=count) for state, count in ad.reach.items()],
        retain_until=to_timestamp(ad.retain_until), create_time=to_timestamp(ad.create_time))
    if ad.first_display is not None:
        message.first_display_time.CopyFrom(to_timestamp(ad.first_display))
    if ad.last_display is not None:
        message.last_display_time.CopyFrom(to_timestamp(ad.last_display))
    return message


def displays_in(rows: list[ads_pb2.AdReach]) -> list[Displays]:
    return [Displays(row.member_state, from_timestamp(row.day, field=f"reach[{index}].day").date(), row.impressions)
            for index, row in enumerate(rows)]


def search_in(request: ads_pb2.SearchAdsRequest) -> AdSearch:
    return AdSearch(
        advertiser=request.advertiser_query, payer=request.payer_query, text=request.text_query,
        member_state=request.member_state,
        kind=AdKind[ads_pb2.AdKind.Name(request.kind).removeprefix("AD_KIND_")] if request.kind else None,
        start=from_timestamp(request.start_time, field="start_time") if request.HasField("start_time") else None,
        end=from_timestamp(request.end_time, field="end_time") if request.HasField("end_time") else None)


def decision_out(decision: TargetingDecision) -> ads_pb2.CheckAdTargetingResponse:
    return ads_pb2.CheckAdTargetingResponse(
        permitted=decision.permitted,
        refusals=["TARGETING_REFUSAL_" + refusal.value for refusal in decision.refusals],
        explanations=decision.explanations)


